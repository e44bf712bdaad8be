"""Rendering at send time, without the API: built-ins per contact, campaign variables, quick
replies and cards, and a clear failure instead of a `{{...}}` left in a message."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from models.contact import Contact
from models.template import QuickReplyOption, Template, TemplateType
from services.core.errors import ValidationFailed
from services.templates.templates import (
    MessageTooLong,
    MissingVariable,
    choice_for_reply,
    placeholders,
    preview,
    render,
    render_for_contact,
)


def _template(content: str, **fields: Any) -> Template:
    return Template(merchant_id="m", name="t", content=content, **fields)


def _contact(**fields: Any) -> Contact:
    return Contact(merchant_id="m", account_id=uuid.uuid4(), twitter_user_id="1", **fields)


def test_placeholders_allow_spaces_and_attribute_keys() -> None:
    text = "Hi {{ name }}, {{shop_name}}: {{attributes.tier}} {{name}} {{  attributes.x-y }}"
    assert placeholders(text) == ["name", "shop_name", "attributes.tier", "attributes.x-y"]


@pytest.mark.parametrize(
    "text", ["Hi {{na me}}", "Hi {{}}", "Hi {{ 1st }}", "Hi {{name", "Hi name}}", "{{a.b.c}}"]
)
def test_malformed_placeholders_are_refused(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        placeholders(text)
    assert caught.value.details is not None
    assert caught.value.details["field"] == "content"


def test_contact_built_ins_and_campaign_variables() -> None:
    template = _template(
        "Hi {{name}} (@{{ username }}, {{displayName}}), {{attributes.tier}} at {{shop_name}}"
    )
    contact = _contact(username="alice_shop", display_name="Alice", attributes={"tier": "gold"})

    rendered = render_for_contact(template, contact, {"shop_name": "GoodGo", "name": "Friend"})

    # the contact's own values win over campaign-level ones of the same name
    assert rendered.text == "Hi Alice (@alice_shop, Alice), gold at GoodGo"


def test_name_falls_back_to_username_then_to_a_campaign_default() -> None:
    template = _template("Hi {{name}}! {{attributes.points}} points, {{attributes.vip}}")
    only_username = _contact(username="bob", attributes={"points": 12, "vip": True})
    nameless = _contact(attributes={"points": 0.5, "vip": False})

    assert render_for_contact(template, only_username, {}).text == "Hi bob! 12 points, true"
    assert (
        render_for_contact(template, nameless, {"name": "there"}).text
        == "Hi there! 0.5 points, false"
    )


def test_a_missing_value_fails_with_its_name() -> None:
    template = _template("Hi {{name}}, use {{discount_code}} ({{attributes.tier}})")
    contact = _contact(username="bob", attributes={"tier": None})

    with pytest.raises(MissingVariable) as caught:
        render_for_contact(template, contact, {"discount_code": "X"})

    assert caught.value.name == "attributes.tier"
    assert str(caught.value) == "no value for template variable 'attributes.tier'"
    with pytest.raises(MissingVariable, match="discount_code"):
        render_for_contact(template, _contact(username="b", attributes={"tier": "g"}), {})


def test_quick_reply_options_become_numbered_choices() -> None:
    template = _template(
        "How was your order, {{name}}?",
        type=TemplateType.quick_reply,
        options=[{"label": "Great"}, {"label": "Fine", "value": "ok"}, {"label": "Call {{shop}}"}],
    )

    rendered = render(template, {"name": "Ann", "shop": "GoodGo"})

    assert rendered.text == "How was your order, Ann?\n\n1. Great\n2. Fine\n3. Call GoodGo"
    assert [o.value for o in rendered.options] == [None, "ok", None]
    assert choice_for_reply(rendered.options, " 2. ") == rendered.options[1]
    assert choice_for_reply(rendered.options, "great") == rendered.options[0]
    assert choice_for_reply(rendered.options, "maybe") is None


def test_card_appends_its_link_and_keeps_its_media() -> None:
    template = _template(
        "New arrivals, {{name}}",
        type=TemplateType.card,
        card={"linkUrl": "https://shop.example/new", "mediaUrl": "https://cdn.example/a.jpg"},
    )

    rendered = render(template, {"name": "Ann"})

    assert rendered.text == "New arrivals, Ann\n\nhttps://shop.example/new"
    assert rendered.link_url == "https://shop.example/new"
    assert rendered.media_url == "https://cdn.example/a.jpg"


def test_a_message_longer_than_x_allows_fails() -> None:
    template = _template("{{blob}}")
    with pytest.raises(MessageTooLong):
        render(template, {"blob": "x" * 10_001})


def test_preview_turns_a_missing_sample_into_a_named_422() -> None:
    with pytest.raises(ValidationFailed) as caught:
        preview(_template("Hi {{name}} {{code}}"), {"name": "Ann"})
    assert caught.value.details == {
        "field": "variables.code",
        "reason": "no value given for 'code'",
    }


def test_options_keep_their_shape() -> None:
    option = QuickReplyOption(label="Yes", value="yes")
    assert option.model_dump(by_alias=True) == {"label": "Yes", "value": "yes"}
