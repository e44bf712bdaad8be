"""Templates: `{{variable}}` placeholders, their validation, and rendering at send time."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from models.contact import Contact
from models.template import (
    MAX_DM_LENGTH,
    QuickReplyOption,
    Template,
    TemplateCard,
    TemplateCreate,
    TemplateType,
    TemplateUpdate,
)
from services.core.errors import ValidationFailed
from services.core.in_use import UsageChecks
from services.core.tenancy import get_owned, owned_by

logger = logging.getLogger(__name__)

# `{{ name }}`, `{{shop_name}}`, `{{attributes.tier}}`: whitespace inside the braces is allowed.
_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]{1,100})?$")
ATTRIBUTE_PREFIX = "attributes."
BUILT_INS = ("name", "username", "displayName")


class TemplateRenderError(Exception):
    """The template cannot become a message for this recipient; `str()` is the reason."""


class MissingVariable(TemplateRenderError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no value for template variable '{name}'")
        self.name = name


class MessageTooLong(TemplateRenderError):
    def __init__(self, length: int) -> None:
        super().__init__(f"rendered message has {length} characters; X allows {MAX_DM_LENGTH}")
        self.length = length


# Placeholders ---------------------------------------------------------------------------------


def placeholders(text: str, *, field: str = "content") -> list[str]:
    """The variable names used in `text`, in order of first use; ValidationFailed(field) when a
    `{{...}}` does not hold a valid name or braces are left unbalanced."""
    names: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        name = match.group(1).strip()
        if not _NAME.match(name):
            raise ValidationFailed(
                field,
                f"'{match.group(0)}' is not a valid placeholder: use letters, digits and '_' "
                "(e.g. {{shop_name}} or {{attributes.tier}})",
            )
        if name not in names:
            names.append(name)
    leftover = _PLACEHOLDER.sub("", text)
    if "{{" in leftover or "}}" in leftover:
        raise ValidationFailed(field, "unbalanced '{{' or '}}': write placeholders as {{name}}")
    return names


def _used_variables(content: str, options: Sequence[QuickReplyOption] | None) -> list[str]:
    names = placeholders(content)
    for i, option in enumerate(options or ()):
        for name in placeholders(option.label, field=f"options[{i}].label"):
            if name not in names:
                names.append(name)
    return names


def validate_definition(
    *,
    type: TemplateType,
    content: str,
    variables: list[str] | None,
    options: Sequence[QuickReplyOption] | None,
    card: TemplateCard | None,
) -> list[str]:
    """Check a template as a whole; answer its variables (the placeholders used, when the
    caller listed none). Campaigns call it at start to refuse a template that no longer holds."""
    if type is TemplateType.quick_reply and not options:
        raise ValidationFailed("options", "a quick_reply template needs 1 or more options")
    if type is not TemplateType.quick_reply and options:
        raise ValidationFailed("options", f"only quick_reply templates have options, not {type}")
    if type is TemplateType.card and card is None:
        raise ValidationFailed("card", "a card template needs a card with a linkUrl")
    if type is not TemplateType.card and card is not None:
        raise ValidationFailed("card", f"only card templates have a card, not {type}")
    used = _used_variables(content, options)
    if variables is None:
        return used
    seen: set[str] = set()
    for name in variables:
        if name in seen:
            raise ValidationFailed("variables", f"'{name}' is listed twice")
        seen.add(name)
        if name not in used:
            raise ValidationFailed("variables", f"'{name}' is listed but not used in the template")
    for name in used:
        if name not in seen:
            raise ValidationFailed(
                "variables", f"'{name}' is used in the template but not listed in variables"
            )
    return list(variables)


# Persistence ----------------------------------------------------------------------------------


def _options_json(options: Sequence[QuickReplyOption] | None) -> list[dict[str, Any]] | None:
    return [o.model_dump(by_alias=True, exclude_none=True) for o in options] if options else None


def _card_json(card: TemplateCard | None) -> dict[str, Any] | None:
    return card.model_dump(by_alias=True, exclude_none=True) if card else None


def stored_options(template: Template) -> list[QuickReplyOption]:
    return [QuickReplyOption.model_validate(o) for o in template.options or ()]


def stored_card(template: Template) -> TemplateCard | None:
    return TemplateCard.model_validate(template.card) if template.card else None


async def get_template(
    session: AsyncSession, merchant_id: str, template_id: uuid.UUID, *, for_update: bool = False
) -> Template:
    return await get_owned(
        session, Template, merchant_id, template_id, resource="template", for_update=for_update
    )


def list_statement(merchant_id: str, type: TemplateType | None, search: str | None) -> Any:
    statement = owned_by(Template, merchant_id).order_by(
        Template.created_at.desc(),  # type: ignore[attr-defined]
        Template.id,  # type: ignore[arg-type]
    )
    if type is not None:
        statement = statement.where(Template.type == type)
    if search:
        statement = statement.where(Template.name.icontains(search, autoescape=True))  # type: ignore[attr-defined]
    return statement


async def create_template(
    session: AsyncSession, merchant_id: str, body: TemplateCreate
) -> Template:
    variables = validate_definition(
        type=body.type,
        content=body.content,
        variables=body.variables,
        options=body.options,
        card=body.card,
    )
    template = Template(
        merchant_id=merchant_id,
        name=body.name,
        type=body.type,
        content=body.content,
        variables=variables,
        options=_options_json(body.options),
        card=_card_json(body.card),
    )
    session.add(template)
    await session.flush()
    logger.info("template.created", extra={"template_id": str(template.id)})
    return template


async def update_template(
    session: AsyncSession, template: Template, body: TemplateUpdate
) -> Template:
    """Apply the fields sent. A changed type drops the options/card the new type does not use;
    a changed content without `variables` takes the placeholders it now holds."""
    await ensure_not_in_use(session, template)
    sent = body.model_fields_set
    type = body.type if body.type is not None else TemplateType(template.type)
    options = body.options if "options" in sent else stored_options(template) or None
    card = body.card if "card" in sent else stored_card(template)
    if type != template.type:
        if "options" not in sent and type is not TemplateType.quick_reply:
            options = None
        if "card" not in sent and type is not TemplateType.card:
            card = None
    content = body.content if body.content is not None else template.content
    variables = validate_definition(
        type=type, content=content, variables=body.variables, options=options, card=card
    )
    if body.variables is None and set(variables) == set(template.variables):
        variables = list(template.variables)  # the same names: keep the caller's order
    template.variables = variables
    if body.name is not None:
        template.name = body.name
    template.type = type
    template.content = content
    template.options = _options_json(options)
    template.card = _card_json(card)
    session.add(template)
    await session.flush()
    logger.info("template.updated", extra={"template_id": str(template.id)})
    return template


async def delete_template(session: AsyncSession, template: Template) -> None:
    await ensure_not_in_use(session, template)
    await session.delete(template)
    await session.flush()
    logger.info("template.deleted", extra={"template_id": str(template.id)})


# In use by campaigns ----------------------------------------------------------------------------

_usage = UsageChecks[Template]("template")
register_usage_check = _usage.register
unregister_usage_check = _usage.unregister
ensure_not_in_use = _usage.ensure_not_in_use


# Rendering ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    text: str  # the direct message to send: body, then numbered choices or the card's link
    options: tuple[QuickReplyOption, ...] = ()
    link_url: str | None = None
    # A card's media: uploaded to X and attached to the DM (services/messaging/media.py), not in the text.
    media_url: str | None = None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def contact_variables(contact: Contact) -> dict[str, Any]:
    """The built-in values one contact gives a template; absent ones are simply left out."""
    values: dict[str, Any] = {}
    name = contact.display_name or contact.username
    if name:
        values["name"] = name
    if contact.username:
        values["username"] = contact.username
    if contact.display_name:
        values["displayName"] = contact.display_name
    for key, value in (contact.attributes or {}).items():
        if value is not None:
            values[ATTRIBUTE_PREFIX + key] = value
    return values


def _fill(text: str, values: Mapping[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in values or values[name] is None:
            raise MissingVariable(name)
        return _as_text(values[name])

    return _PLACEHOLDER.sub(substitute, text)


def render(template: Template, values: Mapping[str, Any]) -> RenderedMessage:
    """The message for these values; MissingVariable names the first placeholder without one,
    so a `{{...}}` is never sent."""
    body = _fill(template.content, values)
    options = tuple(
        option.model_copy(update={"label": _fill(option.label, values)})
        for option in stored_options(template)
    )
    card = stored_card(template)
    text = body
    if options:
        text += "\n\n" + "\n".join(f"{i}. {o.label}" for i, o in enumerate(options, start=1))
    if card is not None:
        text += "\n\n" + card.link_url
    if len(text) > MAX_DM_LENGTH:
        raise MessageTooLong(len(text))
    return RenderedMessage(
        text=text,
        options=options,
        link_url=card.link_url if card else None,
        media_url=card.media_url if card else None,
    )


def render_for_contact(
    template: Template, contact: Contact, campaign_variables: Mapping[str, Any]
) -> RenderedMessage:
    """Send-time rendering: the contact's own values (name, username, displayName,
    attributes.<key>) first; campaign-level variables fill the rest, and so also stand in as
    defaults for a contact that lacks one."""
    return render(template, {**campaign_variables, **contact_variables(contact)})


def preview(template: Template, sample: Mapping[str, Any]) -> RenderedMessage:
    """Render with sample values; a missing one is the caller's input error (422)."""
    try:
        return render(template, sample)
    except MissingVariable as exc:
        raise ValidationFailed(
            f"variables.{exc.name}", f"no value given for '{exc.name}'"
        ) from None
    except MessageTooLong as exc:
        raise ValidationFailed("variables", str(exc)) from None


def choice_for_reply(options: Sequence[QuickReplyOption], reply: str) -> QuickReplyOption | None:
    """The option a recipient picked by answering its number or its label, if any."""
    answer = reply.strip().rstrip(".").casefold()
    for i, option in enumerate(options, start=1):
        if answer in (str(i), option.label.casefold()):
            return option
    return None
