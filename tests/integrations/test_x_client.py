"""XClient (tweepy on a rebased session) against the X sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import pickle
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from pydantic import SecretStr

from integrations.x import (
    DMEventPage,
    XClient,
    XCredentials,
    XError,
    XForbidden,
    XInvalidCredentials,
    XRateLimited,
    XRequestRejected,
    XTokenRevoked,
    XUnauthorized,
    XUnavailable,
    XUser,
    _RebasedSession,
    x_client_from_settings,
)
from mktx.settings import Environment, Settings
from sandbox.admin import SandboxAdmin, SandboxUser
from sandbox.server import RunningSandbox
from tests.integrations.conftest import own_sandbox

KEY = "x-client-test-key"
SECRET = "x-client-test-secret"
WEBHOOK_ID = "x-client-test-webhook"

T = TypeVar("T")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningSandbox]:
    with own_sandbox(KEY, SECRET, WEBHOOK_ID) as running:
        yield running


@pytest.fixture
def x(emulator: RunningSandbox) -> Iterator[XClient]:
    client = XClient(emulator.url, KEY, SECRET, timeout=2.0)
    yield client
    client.close()


async def new_user(admin: SandboxAdmin, prefix: str = "u", accepts_dms: bool = True) -> SandboxUser:
    return await admin.create_user(f"{prefix}_{uuid.uuid4().hex[:8]}", accepts_dms=accepts_dms)


def creds(user: SandboxUser) -> XCredentials:
    return XCredentials(user.access_token, user.access_token_secret)


async def run(call: Callable[..., T], *args: object) -> T:
    """As the service calls XClient: off the event loop."""
    return await asyncio.to_thread(call, *args)


# Credentials ---------------------------------------------------------------------------------


async def test_get_me_reads_the_account(x: XClient, admin: SandboxAdmin) -> None:
    user = await new_user(admin, "me")
    me = await run(x.get_me, creds(user))
    assert me == XUser(user.id, user.username, user.username, me.profile_image_url)
    assert me.profile_image_url and me.profile_image_url.startswith("https://")


async def test_credentials_x_rejects_are_invalid_credentials(
    emulator: RunningSandbox, x: XClient, admin: SandboxAdmin
) -> None:
    user = await new_user(admin)
    wrong_app = XClient(emulator.url, KEY, "not-the-consumer-secret")
    wrong_secret = XCredentials(user.access_token, "not-the-token-secret")
    unknown = XCredentials("1-unknown", "whatever")

    for client, credentials in ((wrong_app, creds(user)), (x, wrong_secret), (x, unknown)):
        with pytest.raises(XInvalidCredentials) as caught:
            await run(client.get_me, credentials)
        assert caught.value.status == 401 and caught.value.reason == "Unauthorized"


async def test_a_revoked_token_is_token_revoked_on_other_calls(
    x: XClient, admin: SandboxAdmin
) -> None:
    user, other = await new_user(admin), await new_user(admin)
    await admin.revoke(user.access_token)

    with pytest.raises(XTokenRevoked) as on_send:
        await run(x.send_dm, creds(user), other.id, "hi")
    with pytest.raises(XTokenRevoked):
        await run(x.list_dm_events, creds(user))
    with pytest.raises(XInvalidCredentials):
        await run(x.get_me, creds(user))
    assert isinstance(on_send.value, XUnauthorized) and on_send.value.status == 401


async def test_invalidate_token_makes_x_refuse_it(x: XClient, admin: SandboxAdmin) -> None:
    user = await new_user(admin)
    spare = await admin.new_token(user.id)

    await run(x.invalidate_token, creds(user))
    await run(x.invalidate_token, creds(user))  # already invalid: still fine

    with pytest.raises(XInvalidCredentials):
        await run(x.get_me, creds(user))
    other_token = XCredentials(spare.access_token, spare.access_token_secret)
    assert (await run(x.get_me, other_token)).id == user.id


# Direct messages -----------------------------------------------------------------------------


async def test_send_dm_is_received(x: XClient, admin: SandboxAdmin) -> None:
    shop, customer = await new_user(admin, "shop"), await new_user(admin, "cust")

    sent = await run(x.send_dm, creds(shop), customer.id, "Thanks for your order!")
    longest = await run(x.send_dm, creds(shop), customer.id, "z" * 10_000)

    [first, second] = await admin.dms(recipient_id=customer.id)
    assert (first.id, first.sender_id, first.text) == (
        sent.dm_event_id,
        shop.id,
        "Thanks for your order!",
    )
    assert first.dm_conversation_id == sent.dm_conversation_id == longest.dm_conversation_id
    assert second.id == longest.dm_event_id


async def test_text_over_10000_chars_is_rejected(x: XClient, admin: SandboxAdmin) -> None:
    shop, customer = await new_user(admin, "shop"), await new_user(admin, "cust")
    with pytest.raises(XRequestRejected) as caught:
        await run(x.send_dm, creds(shop), customer.id, "z" * 10_001)
    assert caught.value.status == 400 and "10000" in caught.value.reason
    assert await admin.dms(recipient_id=customer.id) == []


async def test_a_recipient_who_refuses_dms_is_forbidden_with_xs_reason(
    x: XClient, admin: SandboxAdmin
) -> None:
    shop, closed = await new_user(admin, "shop"), await new_user(admin, "closed", accepts_dms=False)
    with pytest.raises(XForbidden) as caught:
        await run(x.send_dm, creds(shop), closed.id, "hello")
    assert caught.value.status == 403
    assert "do not accept direct messages" in caught.value.reason


async def test_dm_events_list_in_pages(x: XClient, admin: SandboxAdmin) -> None:
    shop, customer, other = [await new_user(admin) for _ in range(3)]
    for n in range(3):
        await run(x.send_dm, creds(shop), customer.id, f"c{n}")
    await admin.simulate_dm(customer.id, shop.id, "answer")
    await run(x.send_dm, creds(shop), other.id, "o")

    first: DMEventPage = await asyncio.to_thread(
        x.list_dm_events, creds(shop), customer.id, max_results=2
    )
    rest = await asyncio.to_thread(
        x.list_dm_events, creds(shop), customer.id, pagination_token=first.next_token
    )
    everything = await run(x.list_dm_events, creds(shop))
    nobody = await run(x.list_dm_events, creds(await new_user(admin)))

    assert [e.text for e in first.events + rest.events] == ["answer", "c2", "c1", "c0"]
    assert first.next_token and rest.next_token is None
    answer = first.events[0]
    assert answer.sender_id == customer.id and answer.event_type == "MessageCreate"
    assert answer.dm_conversation_id == first.events[1].dm_conversation_id
    assert answer.created_at and abs(datetime.now(UTC) - answer.created_at).total_seconds() < 60
    assert len(everything.events) == 5
    assert nobody == DMEventPage([], None)


# Rate limits and outages ---------------------------------------------------------------------


async def test_429_is_rate_limited_until_xs_reset(x: XClient, admin: SandboxAdmin) -> None:
    shop, customer = await new_user(admin), await new_user(admin)
    await admin.set_rate_limit("dm_send", limit=1, window_seconds=120, user_id=shop.id)
    await run(x.send_dm, creds(shop), customer.id, "first")

    with pytest.raises(XRateLimited) as caught:
        await run(x.send_dm, creds(shop), customer.id, "second")

    limited = caught.value
    assert limited.status == 429
    assert 110 <= (limited.reset_at - datetime.now(UTC)).total_seconds() <= 122
    assert 110 <= limited.retry_after <= 122
    assert pickle.loads(pickle.dumps(limited)).reset_at == limited.reset_at


async def test_a_burst_of_429s_passes(x: XClient, admin: SandboxAdmin) -> None:
    user = await new_user(admin)
    await admin.set_faults(burst429=1, user_id=user.id, retry_after_seconds=3)
    with pytest.raises(XRateLimited) as caught:
        await run(x.get_me, creds(user))
    assert 1 <= caught.value.retry_after <= 4
    assert (await run(x.get_me, creds(user))).id == user.id


async def test_5xx_refused_connections_and_timeouts_are_unavailable(
    emulator: RunningSandbox, x: XClient, admin: SandboxAdmin
) -> None:
    user = await new_user(admin)
    await admin.set_faults(error_rate=1.0, error_status=503, user_id=user.id)
    with pytest.raises(XUnavailable) as outage:
        await run(x.get_me, creds(user))
    assert outage.value.status == 503

    await admin.set_faults(latency_ms=600, user_id=user.id)
    impatient = XClient(emulator.url, KEY, SECRET, timeout=0.2)
    with pytest.raises(XUnavailable) as timeout:
        await run(impatient.get_me, creds(user))
    assert timeout.value.status is None

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nowhere = XClient(f"http://127.0.0.1:{closed_port}", KEY, SECRET, timeout=1.0)
    with pytest.raises(XUnavailable) as refused:
        await run(nowhere.get_me, creds(user))
    assert refused.value.status is None and "Connection" in refused.value.reason


async def test_latency_is_felt_and_path_scoped_faults_spare_other_calls(
    x: XClient, admin: SandboxAdmin
) -> None:
    shop, customer = await new_user(admin), await new_user(admin)
    await admin.set_faults(error_rate=1.0, error_status=502, path_prefix="/2/dm_conversations")
    with pytest.raises(XUnavailable) as caught:
        await run(x.send_dm, creds(shop), customer.id, "hi")
    assert caught.value.status == 502
    assert (await run(x.get_me, creds(shop))).id == shop.id

    await admin.set_faults(latency_ms=250, path_prefix="/2/users/me")
    started = time.monotonic()
    await run(x.get_me, creds(shop))
    assert time.monotonic() - started >= 0.25


# Account Activity ----------------------------------------------------------------------------


async def test_subscribe_check_and_unsubscribe_with_an_app_token(
    emulator: RunningSandbox, x: XClient, admin: SandboxAdmin
) -> None:
    user = await new_user(admin)
    started = datetime.now(UTC)  # the app's token calls name no user: this test's come after
    await run(x.subscribe_account_activity, creds(user), WEBHOOK_ID)
    assert await run(x.is_subscribed, creds(user), WEBHOOK_ID) is True
    assert user.id in (await admin.subscriptions())[WEBHOOK_ID]

    await run(x.unsubscribe_account_activity, user.id, WEBHOOK_ID)
    await run(x.unsubscribe_account_activity, user.id, WEBHOOK_ID)

    assert await run(x.is_subscribed, creds(user), WEBHOOK_ID) is False
    token_calls = [
        r
        for r in await admin.requests(path_prefix="/oauth2/token")
        if r.status == 200 and r.at >= started
    ]
    assert len(token_calls) == 1  # obtained once, then cached
    with pytest.raises(XRequestRejected) as unknown:
        await run(x.subscribe_account_activity, creds(user), "no-such-webhook")
    assert unknown.value.status == 404


async def test_app_token_is_renewed_once_when_x_forgets_it(
    emulator: RunningSandbox, x: XClient, admin: SandboxAdmin
) -> None:
    user = await new_user(admin)
    await run(x.unsubscribe_account_activity, user.id, WEBHOOK_ID)
    emulator.state.invalidate_bearer_tokens()  # X forgot the app's bearer token

    await run(x.unsubscribe_account_activity, user.id, WEBHOOK_ID)

    configured = XClient(emulator.url, KEY, SECRET, bearer_token="AAAA-not-issued")
    with pytest.raises(XInvalidCredentials):
        await run(configured.unsubscribe_account_activity, user.id, WEBHOOK_ID)
    wrong_app = XClient(emulator.url, KEY, "wrong-secret")
    with pytest.raises(XInvalidCredentials) as app_refused:
        await run(wrong_app.unsubscribe_account_activity, user.id, WEBHOOK_ID)
    assert app_refused.value.status == 403


# Plumbing ------------------------------------------------------------------------------------


def test_tweepys_hosts_are_rebased_and_others_left_alone() -> None:
    session = _RebasedSession("http://127.0.0.1:8600/prefix/", timeout=1.0)
    assert session.rebase("https://api.twitter.com/2/users/me") == (
        "http://127.0.0.1:8600/prefix/2/users/me"
    )
    assert session.rebase("https://api.x.com/2/dm_events?x=1") == (
        "http://127.0.0.1:8600/prefix/2/dm_events?x=1"
    )
    assert session.rebase("https://api.twitter.com.evil.example/2") == (
        "https://api.twitter.com.evil.example/2"
    )


async def test_secrets_stay_out_of_reprs_and_errors(x: XClient, admin: SandboxAdmin) -> None:
    user = await new_user(admin)
    credentials = creds(user)
    await admin.revoke(user.access_token)
    with pytest.raises(XError) as caught:
        await run(x.send_dm, credentials, user.id, "hi")

    shown = " ".join([repr(credentials), str(credentials), str(caught.value), repr(caught.value)])
    assert user.access_token not in shown and user.access_token_secret not in shown
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET not in repr(x)


def test_client_from_settings() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        x_api_base_url="http://127.0.0.1:8600/",
        x_consumer_key=SecretStr("k"),
        x_consumer_secret=SecretStr("s"),
        x_bearer_token=SecretStr("b"),
        x_timeout_seconds=3.5,
    )
    client = x_client_from_settings(settings)
    assert client.base_url == "http://127.0.0.1:8600"
    assert client._app_token() == "b"
    assert client._session._timeout == 3.5
