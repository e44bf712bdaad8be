"""Bearer JWTs: who may call, and what each role may do."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mktx.settings import Settings
from services.core.auth import Role, decode_token, issue_token
from services.core.errors import Unauthorized
from tests.conftest import Api, Merchant


def _claims(merchant: Merchant, **overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": merchant.user_id,
        "merchantId": merchant.id,
        "roles": ["admin"],
        "exp": int(time.time()) + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(settings: Settings, claims: dict[str, object], secret: str | None = None) -> str:
    assert settings.jwt_secret is not None
    return jwt.encode(claims, secret or settings.jwt_secret.get_secret_value(), algorithm="HS256")


async def _accounts(api: Api, token: str | None, scheme: str = "Bearer") -> tuple[int, dict]:
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    response = await api.client.get("/api/v1/mkt-x/accounts", headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "malformed",
        "wrong-scheme",
        "expired",
        "forged",
        "no-exp",
        "no-merchant",
        "none-alg",
    ],
)
async def test_bad_tokens_are_401_in_the_envelope(api: Api, settings: Settings, case: str) -> None:
    merchant = api.merchant
    token: str | None
    scheme = "Bearer"
    if case == "missing":
        token = None
    elif case == "malformed":
        token = "not-a-jwt"
    elif case == "wrong-scheme":
        token, scheme = merchant.token(), "Basic"
    elif case == "expired":
        token = _hs256(settings, _claims(merchant, exp=int(time.time()) - 10))
    elif case == "forged":
        token = _hs256(settings, _claims(merchant), secret="another-secret-of-at-least-32-chars!")
    elif case == "no-exp":
        token = _hs256(settings, {k: v for k, v in _claims(merchant).items() if k != "exp"})
    elif case == "no-merchant":
        token = _hs256(settings, _claims(merchant, merchantId=None))
    else:
        token = jwt.encode(_claims(merchant), key="", algorithm="none")

    status, body = await _accounts(api, token, scheme)

    assert status == 401
    assert body["success"] is False
    assert body["code"] == "UNAUTHORIZED"
    assert body["error"]


async def test_expired_token_says_so(api: Api, settings: Settings) -> None:
    token = _hs256(settings, _claims(api.merchant, exp=int(time.time()) - 10))
    _, body = await _accounts(api, token)
    assert body["error"] == "token expired"


async def test_valid_token_is_accepted(api: Api) -> None:
    status, body = await _accounts(api, api.merchant.token(Role.viewer))
    assert status == 200
    assert body == {
        "success": True,
        "data": [],
        "pagination": {
            "page": 1,
            "limit": 20,
            "total": 0,
            "totalPages": 0,
            "totalIsEstimate": False,
        },
    }


async def test_viewer_cannot_change_anything(api: Api) -> None:
    body = {"oauthToken": "whatever", "oauthTokenSecret": "whatever"}
    for role in (Role.viewer, Role.agent):
        response = await api.post("/accounts", json=body, role=role)
        assert response.status_code == 403, role
        assert response.json()["code"] == "FORBIDDEN"


async def test_unknown_roles_grant_nothing(api: Api, settings: Settings) -> None:
    token = _hs256(settings, _claims(api.merchant, roles=["superuser"]))
    status, body = await _accounts(api, token)
    assert status == 403
    assert body["code"] == "FORBIDDEN"


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_rs256_with_issuer_and_audience() -> None:
    private, public = _rsa_pair()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_public_key=public,
        jwt_issuer="https://iam.example",
        jwt_audience="mkt-x",
    )
    token = issue_token(
        settings, merchant_id="m-1", user_id="u-1", roles=[Role.agent], private_key=private
    )
    principal = decode_token(settings, token)
    assert (principal.merchant_id, principal.user_id, principal.roles) == (
        "m-1",
        "u-1",
        frozenset({Role.agent}),
    )

    wrong_audience = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_public_key=public,
        jwt_issuer="https://iam.example",
        jwt_audience="another-service",
    )
    with pytest.raises(Unauthorized):
        decode_token(wrong_audience, token)

    wrong_issuer = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_public_key=public,
        jwt_issuer="https://evil.example",
        jwt_audience="mkt-x",
    )
    with pytest.raises(Unauthorized):
        decode_token(wrong_issuer, token)

    # An HS256 token signed with the public key as secret (algorithm confusion) is refused.
    confused = jwt.encode(
        {"sub": "u", "merchantId": "m", "exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256"
    )
    with pytest.raises(Unauthorized):
        decode_token(settings, confused)
