"""X's pagination tokens: opaque base32hex strings (the OpenAPI document: "A base32hex-encoded
pagination token", at least 16 characters; recorded answers carry tokens such as
`18LAA5G1SL0NR5OG0G00ZZZZ`). The sandbox's encode an id cursor, so items arriving between pages
neither repeat nor vanish."""

from __future__ import annotations

import base64
import binascii

from sandbox.problems import invalid_request

_PAD = "Z"  # X's tokens end in a run of Z, outside the base32hex alphabet


def page_token(cursor: int) -> str:
    raw = base64.b32hexencode(cursor.to_bytes(8, "big", signed=False)).decode().rstrip("=")
    return raw + _PAD * max(0, 24 - len(raw))


def decode_page_token(token: str) -> int:
    """The cursor of a token; X's 400 for anything else."""
    raw = token.rstrip(_PAD)
    if len(token) < 16 or not raw:
        raise invalid_request("pagination_token: invalid", "pagination_token")
    try:
        data = base64.b32hexdecode(raw + "=" * (-len(raw) % 8))
    except (binascii.Error, ValueError):
        raise invalid_request("pagination_token: invalid", "pagination_token") from None
    if len(data) != 8:
        raise invalid_request("pagination_token: invalid", "pagination_token")
    return int.from_bytes(data, "big")
