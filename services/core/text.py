"""Text PostgreSQL cannot store: the NUL character (refused by `text` and `jsonb` alike) and
lone UTF-16 surrogates (JSON's `\\ud800` escapes decode to them; no UTF-8 encoding exists).

Refused where text comes in (api/storable.py for every JSON body, query and path parameter;
the contacts import for its files), so that it answers 422 naming the field instead of
failing in the database as a 500."""

from __future__ import annotations

from typing import Any

NUL_REASON = "must not contain the NUL character (U+0000)"
SURROGATE_REASON = "must not contain a lone surrogate (U+D800 to U+DFFF): not Unicode text"


def text_problem(text: str) -> str | None:
    """Why PostgreSQL could not store `text`, or None."""
    if "\x00" in text:
        return NUL_REASON
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_REASON
    return None


def first_unstorable(
    value: Any, where: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], str] | None:
    """The place (keys and indexes below `where`) of the first string, value or object key,
    in a JSON-shaped value that PostgreSQL could not store, with the reason; or None."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [(where, value)]
    while stack:
        place, item = stack.pop()
        if isinstance(item, str):
            reason = text_problem(item)
            if reason is not None:
                return place, reason
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if isinstance(key, str) and (reason := text_problem(key)) is not None:
                    return (*place, key), f"key {reason}"
                stack.append(((*place, key), child))
        elif isinstance(item, list):
            stack.extend(
                ((*place, index), child) for index, child in reversed(list(enumerate(item)))
            )
    return None
