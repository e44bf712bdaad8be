"""Who is calling: bearer JWTs issued by the platform's IAM service, and what each role may do."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

from mktx.settings import Settings
from services.core.errors import Forbidden, Unauthorized


class Role(StrEnum):
    admin = "admin"  # connects accounts, changes settings, runs marketing
    agent = "agent"  # works the inbox: contacts and conversations
    viewer = "viewer"  # reads everything, changes nothing


class Permission(StrEnum):
    read = "read"
    manage_accounts = "manage_accounts"
    manage_contacts = "manage_contacts"
    handle_conversations = "handle_conversations"
    manage_marketing = "manage_marketing"
    manage_ai = "manage_ai"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.admin: frozenset(Permission),
    Role.agent: frozenset(
        {Permission.read, Permission.manage_contacts, Permission.handle_conversations}
    ),
    Role.viewer: frozenset({Permission.read}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    merchant_id: str
    roles: frozenset[Role]

    def can(self, permission: Permission) -> bool:
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles)

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(
                f"your role may not {permission.value.replace('_', ' ')}",
                details={"permission": permission.value, "roles": sorted(self.roles)},
            )


def _verification_key(settings: Settings) -> tuple[str, list[str]]:
    if settings.jwt_public_key:
        return settings.jwt_public_key, ["RS256"]
    assert settings.jwt_secret is not None  # settings guarantee one of the two
    return settings.jwt_secret.get_secret_value(), ["HS256"]


def decode_token(settings: Settings, token: str) -> Principal:
    key, algorithms = _verification_key(settings)
    options = {"require": ["exp", "sub"], "verify_aud": settings.jwt_audience is not None}
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options=options,  # type: ignore[arg-type]
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None

    merchant_id = claims.get("merchantId")
    user_id = claims.get("sub")
    if not isinstance(merchant_id, str) or not merchant_id or len(merchant_id) > 128:
        raise Unauthorized("invalid token: merchantId claim missing")
    if not isinstance(user_id, str) or not user_id or len(user_id) > 128:
        raise Unauthorized("invalid token: sub claim missing")
    raw_roles = claims.get("roles", [])
    if isinstance(raw_roles, str):
        raw_roles = [raw_roles]
    if not isinstance(raw_roles, list):
        raise Unauthorized("invalid token: roles claim must be a list")
    # Roles this service does not know grant nothing; they are not an error.
    roles = frozenset(Role(r) for r in raw_roles if isinstance(r, str) and r in Role.__members__)
    return Principal(user_id=user_id, merchant_id=merchant_id, roles=roles)


def issue_token(
    settings: Settings,
    *,
    merchant_id: str,
    user_id: str,
    roles: list[Role],
    ttl_seconds: int = 3600,
    private_key: str | None = None,
) -> str:
    """A token like the IAM service's, for development and tests (HS256, or RS256 with a key)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "merchantId": merchant_id,
        "roles": [role.value for role in roles],
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if private_key is not None:
        return jwt.encode(claims, private_key, algorithm="RS256")
    if settings.jwt_secret is None:
        raise ValueError("MKTX_JWT_SECRET is needed to issue tokens (RS256 keys stay with IAM)")
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
