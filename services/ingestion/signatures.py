"""Proof that a webhook call comes from X: the CRC answer and the payload signature.

Both are `sha256=` + base64(HMAC-SHA256(consumer_secret, data)); X signs the raw request body,
so the signature is checked against the bytes received, before any JSON parsing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
_PREFIX = "sha256="


def _sign(consumer_secret: str, data: bytes) -> str:
    digest = hmac.new(consumer_secret.encode(), data, hashlib.sha256).digest()
    return _PREFIX + base64.b64encode(digest).decode("ascii")


def crc_response_token(consumer_secret: str, crc_token: str) -> str:
    """The `response_token` X expects in answer to a challenge-response check."""
    return _sign(consumer_secret, crc_token.encode())


def body_signature(consumer_secret: str, body: bytes) -> str:
    """The `x-twitter-webhooks-signature` value X sends with this raw body."""
    return _sign(consumer_secret, body)


def signature_is_valid(consumer_secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time comparison, so a forger learns nothing from how long a refusal takes."""
    if not header:
        return False
    expected = body_signature(consumer_secret, body).encode()
    return hmac.compare_digest(expected, header.strip().encode("latin-1", "replace"))
