"""Bearer tokens the API must refuse, whatever they claim: 401 in the envelope, over HTTP.

With RS256 configured (`MKTX_JWT_PUBLIC_KEY`), only RS256 tokens signed by the IAM's key pass:
not `alg: none` in any spelling, not an HS256 token (signed with the HS256 secret the
deployment may also still have, or with the public key itself as an HMAC secret: the classic
algorithm confusion), not another RS algorithm, not another key. With an issuer and an audience
configured (`MKTX_JWT_ISSUER`, `MKTX_JWT_AUDIENCE`), a token must name both, exactly."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from api.app import BASE_PATH, create_app
from mktx.settings import Settings

ISSUER = "https://iam.goodgo.example"
AUDIENCE = "mkt-x"
HS_SECRET = "an-hs256-secret-the-deployment-also-has-0123456789"


def _pem_pair() -> tuple[str, str]:
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


@dataclass(frozen=True)
class Keys:
    private: str
    public: str
    stranger: str  # another RSA private key: not the IAM's


@pytest.fixture(scope="module")
def keys() -> Keys:
    private, public = _pem_pair()
    return Keys(private, public, _pem_pair()[0])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, object], claims: dict[str, object], hmac_key: bytes | None) -> str:
    """A token written by hand, as an attacker would (PyJWT refuses to sign some of these)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = (
        b""
        if hmac_key is None
        else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{_b64(signature)}"


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "user-1",
        "merchantId": "merchant-jwt-tests",
        "roles": ["admin"],
        "iat": now,
        "exp": now + 300,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mktx.test") as client:
            yield client


@pytest.fixture(scope="module")
async def rs256_api(
    settings: Settings, worker: None, keys: Keys
) -> AsyncIterator[httpx.AsyncClient]:
    """The API of a deployment on RS256 with issuer and audience, its old HS256 secret left set."""
    configured = settings.model_copy(
        update={
            "jwt_public_key": keys.public,
            "jwt_secret": SecretStr(HS_SECRET),
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
        }
    )
    async with _serving(configured) as client:
        yield client


@pytest.fixture(scope="module")
async def hs256_api(settings: Settings, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    """The API of a deployment on HS256 with issuer and audience."""
    configured = settings.model_copy(
        update={"jwt_secret": SecretStr(HS_SECRET), "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    )
    async with _serving(configured) as client:
        yield client


async def _answer(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{BASE_PATH}/accounts", headers={"Authorization": f"Bearer {token}"})


def _refused(response: httpx.Response, token: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == "UNAUTHORIZED" and body["error"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert token not in response.text


def rs256(keys: Keys, **overrides: object) -> str:
    return jwt.encode(claims(**overrides), keys.private, algorithm="RS256")


RS256_REFUSED: dict[str, Callable[[Keys], str]] = {
    "alg none": lambda k: forged({"alg": "none", "typ": "JWT"}, claims(), None),
    "alg None": lambda k: forged({"alg": "None", "typ": "JWT"}, claims(), None),
    "alg NONE": lambda k: forged({"alg": "NONE"}, claims(), None),
    "alg none with a signature": lambda k: forged({"alg": "none"}, claims(), b"x" * 32),
    "HS256 with the deployment's HS256 secret": lambda k: jwt.encode(
        claims(), HS_SECRET, algorithm="HS256"
    ),
    "HS256 with the public key as secret": lambda k: forged(
        {"alg": "HS256", "typ": "JWT"}, claims(), k.public.encode()
    ),
    "RS256 by another key": lambda k: jwt.encode(claims(), k.stranger, algorithm="RS256"),
    "RS512 by the right key": lambda k: jwt.encode(claims(), k.private, algorithm="RS512"),
    "PS256 by the right key": lambda k: jwt.encode(claims(), k.private, algorithm="PS256"),
    "RS256 with its signature stripped": lambda k: rs256(k).rsplit(".", 1)[0] + ".",
    "wrong aud": lambda k: rs256(k, aud="another-service"),
    "aud missing": lambda k: rs256(k, aud=None),
    "aud a list without ours": lambda k: rs256(k, aud=["billing", "crm"]),
    "wrong iss": lambda k: rs256(k, iss="https://evil.example"),
    "iss missing": lambda k: rs256(k, iss=None),
    "expired": lambda k: rs256(k, exp=int(time.time()) - 5),
    "not valid yet": lambda k: rs256(k, nbf=int(time.time()) + 600),
}


@pytest.mark.parametrize("case", sorted(RS256_REFUSED))
async def test_rs256_refuses(rs256_api: httpx.AsyncClient, keys: Keys, case: str) -> None:
    token = RS256_REFUSED[case](keys)
    _refused(await _answer(rs256_api, token), token)


async def test_rs256_accepts_the_iams_token(rs256_api: httpx.AsyncClient, keys: Keys) -> None:
    for token in (rs256(keys), rs256(keys, aud=["crm", AUDIENCE])):
        response = await _answer(rs256_api, token)
        assert response.status_code == 200, response.text
        assert response.json()["data"] == []


HS256_REFUSED: dict[str, Callable[[], str]] = {
    "alg none": lambda: forged({"alg": "none", "typ": "JWT"}, claims(), None),
    "alg none, signed anyway": lambda: forged({"alg": "none"}, claims(), HS_SECRET.encode()),
    "HS512 with the secret": lambda: jwt.encode(claims(), HS_SECRET, algorithm="HS512"),
    "HS256 with another secret": lambda: jwt.encode(
        claims(), "another-secret-of-at-least-32-characters", algorithm="HS256"
    ),
    "wrong aud": lambda: jwt.encode(claims(aud="another-service"), HS_SECRET, algorithm="HS256"),
    "aud missing": lambda: jwt.encode(claims(aud=None), HS_SECRET, algorithm="HS256"),
    "wrong iss": lambda: jwt.encode(
        claims(iss="https://evil.example"), HS_SECRET, algorithm="HS256"
    ),
    "iss missing": lambda: jwt.encode(claims(iss=None), HS_SECRET, algorithm="HS256"),
}


@pytest.mark.parametrize("case", sorted(HS256_REFUSED))
async def test_hs256_refuses(hs256_api: httpx.AsyncClient, case: str) -> None:
    token = HS256_REFUSED[case]()
    _refused(await _answer(hs256_api, token), token)


async def test_hs256_accepts_its_own_token(hs256_api: httpx.AsyncClient) -> None:
    response = await _answer(hs256_api, jwt.encode(claims(), HS_SECRET, algorithm="HS256"))
    assert response.status_code == 200, response.text
