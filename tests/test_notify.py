"""Notification channels over real HTTP: signed webhooks, retries, SMS bodies, WebSocket fan-out."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from alarms import state as sm
from alarms.escalation import EscalationPolicy, Notification, due_notifications
from alarms.model import Condition, Priority
from alarms.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryError,
    Notifier,
    SmsGatewayChannel,
    WebhookChannel,
    WebSocketChannel,
    sign,
    verify_signature,
)
from tests.conftest import free_port

S = 1_000_000_000
SECRET = "s3cret-共享密钥"
POLICY = EscalationPolicy.model_validate({"timing": {"1": {"t1_s": 60, "t2_s": 300}}})


def notification(at_s: int = 60, alarm_id: int = 3) -> Notification:
    t0 = time.time_ns()
    alarm, _ = sm.on_condition(sm.Alarm(7, Condition.HH, Priority.EMERGENCY), True, t0, 55.0)
    notes, _ = due_notifications(
        [(alarm_id, alarm)], {}, POLICY, t0 + at_s * S, point_names={7: "GT-101"}
    )
    [n] = notes
    return n


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes

    def verifies(self, secret: str = SECRET) -> bool:
        return verify_signature(
            secret,
            self.headers[TIMESTAMP_HEADER],
            self.body,
            self.headers[SIGNATURE_HEADER],
            now=time.time(),
            tolerance_s=60,
        )


@dataclass
class Receiver:
    """A webhook receiver answering the scripted statuses in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Request(dict(request.headers), await request.read()))
        await asyncio.sleep(self.delay_s)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def serve(receiver: Receiver, servers: list[TestServer]) -> Receiver:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    servers.append(server)
    receiver.url = str(server.make_url("/hook"))
    return receiver


@pytest.fixture
async def servers() -> AsyncIterator[list[TestServer]]:
    started: list[TestServer] = []
    yield started
    for server in started:
        await server.close()


def webhook(
    url: str,
    session: aiohttp.ClientSession,
    *,
    name: str = "webhook",
    timeout_s: float = 2.0,
    retries: int = 3,
) -> WebhookChannel:
    return WebhookChannel(
        url,
        SECRET,
        timeout_s=timeout_s,
        session=session,
        name=name,
        retries=retries,
        backoff_s=0.01,
    )


async def test_webhook_posts_the_notification_signed_so_the_receiver_can_verify_it(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(), servers)
    n = notification()
    channel = webhook(rx.url, session)
    await channel.send(n)
    [req] = rx.requests
    assert req.verifies()
    assert json.loads(req.body) == n.as_dict()
    assert req.headers[DELIVERY_HEADER] == n.key
    # The documented scheme, computed independently of alarms.notify.
    signed = req.headers[TIMESTAMP_HEADER].encode() + b"." + req.body
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert req.headers[SIGNATURE_HEADER] == f"sha256={digest}"
    assert sign(SECRET, req.headers[TIMESTAMP_HEADER], req.body) == f"sha256={digest}"
    assert abs(int(req.headers[TIMESTAMP_HEADER]) - time.time()) < 5
    assert channel.status.as_dict() == {
        "name": "webhook",
        "up": True,
        "delivered": 1,
        "failed": 0,
        "retries": 0,
        "last_error": None,
    }


async def test_tampered_body_wrong_secret_or_replayed_request_fails_verification(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(), servers)
    await webhook(rx.url, session).send(notification())
    [req] = rx.requests
    ts, sig = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    tampered = req.body.replace(b'"priority":1', b'"priority":4')
    assert tampered != req.body
    now = time.time()
    assert verify_signature(SECRET, ts, req.body, sig, now)
    assert not verify_signature(SECRET, ts, tampered, sig, now)
    assert not verify_signature("another secret", ts, req.body, sig, now)
    assert not verify_signature(SECRET, str(int(ts) + 1), req.body, sig, now)
    assert not verify_signature(SECRET, ts, req.body, sig, now + 301)  # replayed later
    assert not verify_signature(SECRET, "yesterday", req.body, sig, now)


async def test_webhook_retries_after_500_twice_then_delivers_once(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(statuses=[500, 500]), servers)
    n = notification()
    channel = webhook(rx.url, session)
    await channel.send(n)
    assert len(rx.requests) == 3
    assert all(r.verifies() for r in rx.requests)
    assert {r.headers[DELIVERY_HEADER] for r in rx.requests} == {n.key}
    assert len({r.body for r in rx.requests}) == 1
    assert (channel.status.delivered, channel.status.failed, channel.status.retries) == (1, 0, 2)


async def test_webhook_gives_up_after_bounded_retries_on_5xx(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(statuses=[503] * 10), servers)
    channel = webhook(rx.url, session, retries=2)
    with pytest.raises(DeliveryError, match="answered 503"):
        await channel.send(notification())
    assert len(rx.requests) == 3
    assert (channel.status.up, channel.status.failed, channel.status.retries) == (False, 1, 2)


async def test_webhook_does_not_retry_a_client_error(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(statuses=[401]), servers)
    channel = webhook(rx.url, session)
    with pytest.raises(DeliveryError, match="answered 401"):
        await channel.send(notification())
    assert len(rx.requests) == 1 and channel.status.retries == 0


async def test_webhook_that_does_not_answer_in_time_is_retried_then_fails(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(delay_s=1.0), servers)
    channel = webhook(rx.url, session, timeout_s=0.1, retries=1)
    with pytest.raises(DeliveryError, match=r"did not answer within 0\.1 s"):
        await channel.send(notification())
    assert len(rx.requests) == 2


async def test_unreachable_webhook_is_counted_and_other_channels_still_deliver(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(), servers)
    down = webhook(f"http://127.0.0.1:{free_port()}/hook", session, name="down", retries=2)
    up = webhook(rx.url, session, name="up")
    ws = WebSocketChannel()
    listener = ws.events.listen()
    n = notification()
    failed = await Notifier([down, up, ws]).send(n)
    assert failed == ["down"]
    assert down.status.failed == 1 and down.status.retries == 2
    assert down.status.last_error is not None and "ClientConnectorError" in down.status.last_error
    assert len(rx.requests) == 1 and rx.requests[0].verifies()
    assert listener.get_nowait() == [n.as_dict()]


async def test_outage_is_logged_once_and_recovery_once(
    session: aiohttp.ClientSession, servers: list[TestServer], caplog: pytest.LogCaptureFixture
) -> None:
    rx = await serve(Receiver(statuses=[500] * 6), servers)
    channel = webhook(rx.url, session, retries=1)
    caplog.set_level(logging.INFO, logger="anjian.notify")
    for _ in range(3):
        with pytest.raises(DeliveryError):
            await channel.send(notification())
    await channel.send(notification())
    await channel.send(notification())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "cannot deliver" in messages[0] and "answered 500" in messages[0]
    assert "delivers again (3 notifications failed so far)" in messages[1]
    assert (channel.status.failed, channel.status.delivered) == (3, 2)


async def test_sms_gateway_gets_the_role_numbers_and_the_text_signed(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(), servers)
    roster = {"shift_leader": ["+8613800000001", "13800000002"], "leader": ["13900000003"]}
    sms = SmsGatewayChannel(rx.url, SECRET, roster, timeout_s=2, session=session)
    first, later = notification(60), notification(360)
    assert (first.role, later.role) == ("shift_leader", "leader")
    await sms.send(first)
    await sms.send(later)
    bodies = [json.loads(r.body) for r in rx.requests]
    assert bodies == [
        {"to": ["+8613800000001", "13800000002"], "text": first.text},
        {"to": ["13900000003"], "text": later.text},
    ]
    assert "点位 GT-101 高高报警" in bodies[0]["text"] and "shift leader" in bodies[0]["text"]
    assert all(r.verifies() for r in rx.requests)


async def test_sms_role_without_numbers_fails_without_calling_the_gateway(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(), servers)
    sms = SmsGatewayChannel(
        rx.url, SECRET, {"leader": ["13900000003"]}, timeout_s=2, session=session
    )
    with pytest.raises(DeliveryError, match="no phone numbers for role 'shift_leader'"):
        await sms.send(notification(60))
    assert rx.requests == [] and sms.status.failed == 1


@pytest.mark.parametrize(
    ("roster", "message"),
    [
        ({"leader": ["139-0000"]}, "invalid phone number '139-0000'"),
        ({"leader": "13900000003"}, "needs a list of phone numbers"),
        ({"leader": []}, "needs a list of phone numbers"),
    ],
)
def test_sms_roster_with_bad_numbers_is_rejected(
    roster: dict[str, list[str]], message: str
) -> None:
    async def build() -> None:
        async with aiohttp.ClientSession() as s:
            SmsGatewayChannel("http://gw.example/sms", SECRET, roster, timeout_s=1, session=s)

    with pytest.raises(ValueError, match=message):
        asyncio.run(build())


async def test_slow_webhook_does_not_delay_the_websocket_delivery(
    session: aiohttp.ClientSession, servers: list[TestServer]
) -> None:
    rx = await serve(Receiver(delay_s=0.5), servers)
    ws = WebSocketChannel()
    listener = ws.events.listen()
    notifier = Notifier([webhook(rx.url, session, name="slow"), ws])
    n = notification()
    started = time.monotonic()
    task = notifier.submit(n)
    assert await asyncio.wait_for(listener.get(), 0.3) == [n.as_dict()]
    assert time.monotonic() - started < 0.3 and not task.done()
    await notifier.drain()
    assert task.result() == [] and len(rx.requests) == 1


async def test_websocket_drops_a_listener_that_falls_behind_and_keeps_the_others() -> None:
    ws = WebSocketChannel(backlog=2)
    slow, fast = ws.events.listen(), ws.events.listen()
    sent = [notification(60 + 300 * i, alarm_id=i) for i in range(4)]
    received: list[dict[str, object]] = []
    for n in sent:
        await ws.send(n)
        batch = fast.get_nowait()
        assert batch is not None
        received += batch
    assert received == [n.as_dict() for n in sent]
    # The third send found it full: its oldest entry made room for the None that says "reload".
    assert [slow.get_nowait(), slow.get_nowait()] == [[sent[1].as_dict()], None]
    await ws.send(sent[0])
    assert slow.empty() and fast.qsize() == 1


async def test_a_channel_that_raises_unexpectedly_is_logged_once_and_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        name = "broken"

        async def send(self, notification: Notification) -> None:
            raise RuntimeError(f"bug while sending {notification.key}")

    ws = WebSocketChannel()
    listener = ws.events.listen()
    notifier = Notifier([Broken(), ws])
    caplog.set_level(logging.INFO, logger="anjian.notify")
    assert await notifier.send(notification()) == ["broken"]
    assert await notifier.send(notification()) == ["broken"]
    assert listener.qsize() == 2
    [record] = caplog.records
    assert "broken failed unexpectedly" in record.getMessage() and record.exc_info is not None


def test_channel_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="name websocket is used twice"):
        Notifier([WebSocketChannel(), WebSocketChannel()])
