"""Request authentication as X does it: OAuth 1.0a (RFC 5849, HMAC-SHA1) and app-only bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from starlette.requests import Request

from sandbox.state import SandboxState

# X accepts requests whose oauth_timestamp is within a few minutes of its clock.
TIMESTAMP_TOLERANCE_SECONDS = 15 * 60


class AuthError(Exception):
    """Authentication failed; `detail` goes in the problem body (never a secret)."""

    def __init__(self, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class UserContext:
    user_id: str
    access_token: str


def percent_encode(value: str) -> str:
    """RFC 5849 §3.6: everything but unreserved characters, UTF-8 first."""
    return quote(value, safe="~")


def parse_oauth_header(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "oauth":
        raise AuthError("Unauthorized")
    params: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        params[unquote(name)] = unquote(value.strip().strip('"'))
    params.pop("realm", None)
    return params


def base_string_uri(request: Request) -> str:
    """scheme://host[:port]/path as the client addressed it (the Host header, the raw path)."""
    scheme = request.url.scheme.lower()
    host = (request.headers.get("host") or request.url.netloc).lower()
    if (scheme, host.rpartition(":")[2]) in {("http", "80"), ("https", "443")}:
        host = host.rpartition(":")[0]
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    return f"{scheme}://{host}{path.split('?', 1)[0]}"


def signature_base_string(method: str, uri: str, params: list[tuple[str, str]]) -> str:
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join(percent_encode(part) for part in (method.upper(), uri, normalized))


def hmac_sha1_signature(base_string: str, consumer_secret: str, token_secret: str) -> str:
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


async def verify_oauth1(request: Request, state: SandboxState) -> UserContext:
    header = request.headers.get("authorization")
    if not header:
        raise AuthError("Unauthorized")
    oauth = parse_oauth_header(header)
    signature = oauth.pop("oauth_signature", None)
    if signature is None or oauth.get("oauth_signature_method") != "HMAC-SHA1":
        raise AuthError("Unauthorized")
    if oauth.get("oauth_version", "1.0") != "1.0":
        raise AuthError("Unauthorized")
    if oauth.get("oauth_consumer_key") != state.consumer_key:
        raise AuthError("Unauthorized")
    token = state.find_token(oauth.get("oauth_token", ""))
    if token is None or token.revoked:
        raise AuthError("Unauthorized")

    params = list(oauth.items())
    params += parse_qsl(request.url.query, keep_blank_values=True)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        params += parse_qsl((await request.body()).decode(), keep_blank_values=True)
    expected = hmac_sha1_signature(
        signature_base_string(request.method, base_string_uri(request), params),
        state.consumer_secret,
        token.secret,
    )
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise AuthError("Unauthorized")

    now = time.time()
    try:
        timestamp = int(oauth.get("oauth_timestamp", ""))
    except ValueError:
        raise AuthError("Unauthorized") from None
    if abs(now - timestamp) > TIMESTAMP_TOLERANCE_SECONDS:
        raise AuthError("Timestamp out of bounds.")
    nonce = oauth.get("oauth_nonce", "")
    if not nonce or not state.remember_nonce(
        token.token, nonce, now, 2 * TIMESTAMP_TOLERANCE_SECONDS
    ):
        raise AuthError("Unauthorized")
    return UserContext(user_id=token.user_id, access_token=token.token)


def verify_bearer(request: Request, state: SandboxState) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not state.bearer_valid(token.strip()):
        raise AuthError("Unauthorized")


def verify_app_basic(request: Request, state: SandboxState) -> None:
    """HTTP basic auth with the app's consumer key and secret (each RFC 1738-encoded first)."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise AuthError("Unable to verify your credentials", status=403)
    try:
        key, _, secret = base64.b64decode(encoded.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise AuthError("Unable to verify your credentials", status=403) from None
    good_key = hmac.compare_digest(unquote(key).encode(), state.consumer_key.encode())
    good_secret = hmac.compare_digest(unquote(secret).encode(), state.consumer_secret.encode())
    if not (good_key and good_secret):
        raise AuthError("Unable to verify your credentials", status=403)
