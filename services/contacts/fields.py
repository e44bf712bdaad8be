"""What a contact's tags and attributes may hold; shared by the contact endpoints and the import."""

from __future__ import annotations

import json
import re
from typing import Any

from services.core.errors import ValidationFailed

MAX_TAG_LENGTH = 50
MAX_ATTRIBUTE_KEY_LENGTH = 64
MAX_ATTRIBUTES_BYTES = 16_384  # the JSON text of all of a contact's attributes

# Letters and digits of any script, then also space and a few joiners. No comma (the list
# filter's separator), no ; or | (the CSV import's separators), no quotes or braces.
_TAG = re.compile(r"^[^\W_][\w .:/&+#@-]*$")


def tag_problem(raw: object) -> tuple[str | None, str | None]:
    """(normalised tag, None), or (None, the reason it is refused).

    Normalised: trimmed, lowercased, inner whitespace collapsed to one space.
    """
    if not isinstance(raw, str):
        return None, "must be a string"
    tag = " ".join(raw.split()).lower()
    if not tag:
        return None, "must not be empty"
    if len(tag) > MAX_TAG_LENGTH:
        return None, f"must be at most {MAX_TAG_LENGTH} characters"
    if not _TAG.match(tag):
        return None, (
            "must start with a letter or digit and hold only letters, digits, spaces "
            "and _ . : / & + # @ -"
        )
    return tag, None


def normalise_tag(raw: str, field: str) -> str:
    tag, problem = tag_problem(raw)
    if tag is None:
        raise ValidationFailed(field, problem or "invalid tag")
    return tag


def normalise_tags(raw: list[str], field: str = "tags") -> list[str]:
    """Normalised and deduplicated, first occurrence first; a bad one is a 422 naming tags[i]."""
    tags: list[str] = []
    for index, value in enumerate(raw):
        tag = normalise_tag(value, f"{field}[{index}]")
        if tag not in tags:
            tags.append(tag)
    return tags


class AttributesRefused(ValueError):
    def __init__(self, field_suffix: str, reason: str) -> None:
        super().__init__(reason)
        self.field_suffix = field_suffix
        self.reason = reason


def encode_attributes(attributes: object) -> str:
    """The attributes as compact JSON text, or AttributesRefused saying why they may not be
    stored (suffix: where in `attributes`, e.g. ".someKey")."""
    if not isinstance(attributes, dict):
        raise AttributesRefused("", "must be a JSON object")
    for key in attributes:
        if not isinstance(key, str) or not key.strip():
            raise AttributesRefused("", "keys must be non-empty strings")
        if len(key) > MAX_ATTRIBUTE_KEY_LENGTH:
            raise AttributesRefused(
                f".{key[:MAX_ATTRIBUTE_KEY_LENGTH]}…",
                f"keys must be at most {MAX_ATTRIBUTE_KEY_LENGTH} characters",
            )
    try:
        encoded = json.dumps(attributes, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise AttributesRefused("", "numbers must be finite (no NaN or Infinity)") from None
    # PostgreSQL's jsonb cannot hold the NUL character.
    if "\\u0000" in encoded:
        raise AttributesRefused("", "text must not contain the NUL character")
    if len(encoded.encode()) > MAX_ATTRIBUTES_BYTES:
        raise AttributesRefused("", f"must be at most {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    return encoded


def check_attributes(attributes: dict[str, Any], field: str = "attributes") -> dict[str, Any]:
    try:
        encode_attributes(attributes)
    except AttributesRefused as refused:
        raise ValidationFailed(field + refused.field_suffix, refused.reason) from None
    return attributes
