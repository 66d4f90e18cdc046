"""Delivery of escalation notifications behind one `Channel` interface: WebSocket fan-out,
signed webhooks (HTTP POST) and SMS gateways (a webhook flavour), sent together by a `Notifier`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from alarms.escalation import DEFAULT_POLICY, EscalationPolicy, Notification
from streams.fanout import Fanout

log = logging.getLogger("anjian.notify")

TIMESTAMP_HEADER = "X-Anjian-Timestamp"
SIGNATURE_HEADER = "X-Anjian-Signature"
DELIVERY_HEADER = "X-Anjian-Delivery"
# How far a receiver accepts the signed timestamp from its own clock (replay protection).
DEFAULT_TOLERANCE_S = 300.0
LISTENER_BACKLOG = 100
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")


class Channel(Protocol):
    """A way to reach people. `send` returns once delivered and raises `DeliveryError` when it
    gives up; it is bounded in time (a channel retries only a bounded number of times)."""

    name: str

    async def send(self, notification: Notification) -> None: ...


class DeliveryError(Exception):
    """A notification a channel could not deliver; the message names the channel and why."""

    def __init__(self, channel: str, notification: Notification, reason: str) -> None:
        super().__init__(
            f"{channel}: notification {notification.key} to {notification.role} "
            f"not delivered: {reason}"
        )
        self.channel = channel
        self.reason = reason


@dataclass(slots=True)
class ChannelStatus:
    """Delivery counters of one channel; `up` is None until the first delivery attempt."""

    name: str
    up: bool | None = None
    delivered: int = 0
    failed: int = 0  # notifications given up on
    retries: int = 0  # extra HTTP attempts
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "up": self.up,
            "delivered": self.delivered,
            "failed": self.failed,
            "retries": self.retries,
            "last_error": self.last_error,
        }


# ---------------------------------------------------------------------------------------------
# Signing


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The `X-Anjian-Signature` value for `body` sent at `timestamp` (see WebhookChannel)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """For receivers: True if `signature` signs exactly `body` at `timestamp` with `secret` and
    `timestamp` (Unix seconds) is within `tolerance_s` of `now` (an old request replayed fails)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# ---------------------------------------------------------------------------------------------
# Webhooks


class WebhookChannel:
    """HTTP POST of the notification as JSON (`Notification.as_dict()`), signed.

    Signature scheme, for receivers:
    - `X-Anjian-Timestamp`: the send time in whole Unix seconds, e.g. `1700000000`;
    - `X-Anjian-Signature`: `sha256=` + the lowercase hex HMAC-SHA256, keyed with the shared
      secret (UTF-8), of the bytes `<timestamp>.<body>` — the timestamp header value, a full
      stop, then the raw request body exactly as received (UTF-8 JSON);
    - `X-Anjian-Delivery`: the notification's id, the same on every retry: de-duplicate on it.
    Verify with `verify_signature` (or any HMAC library, comparing in constant time) and reject
    timestamps more than a few minutes from your clock. Answer 2xx once accepted.

    Retries: a 5xx or 429 answer, a connection error or a timeout is retried `retries` times
    with exponential backoff (`backoff_s`, doubling, at most `max_backoff_s`); any other answer
    fails at once (it will not get better). A failed notification is counted and raises
    `DeliveryError`; the first failure of an outage and the recovery are each logged once.
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        timeout_s: float,
        session: aiohttp.ClientSession,
        name: str = "webhook",
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError(f"{name}: the webhook secret must not be empty")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{name}: webhook URL {url!r} is not an http(s) URL")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"{name}: timeout_s must be a positive number, not {timeout_s!r}")
        if retries < 0 or backoff_s < 0:
            raise ValueError(f"{name}: retries {retries!r} and backoff_s {backoff_s!r} must be ≥ 0")
        self.name = name
        self.url = url
        self.secret = secret
        self.session = session
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.status = ChannelStatus(name)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def payload(self, notification: Notification) -> Mapping[str, Any]:
        """The JSON body; flavours (SMS gateways) reshape it."""
        return notification.as_dict()

    async def send(self, notification: Notification) -> None:
        body = json.dumps(
            self.payload(notification), ensure_ascii=False, separators=(",", ":")
        ).encode()
        delay = self.backoff_s
        error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self.status.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
            retry, failure = await self._post(body, notification.key)
            if failure is None:
                self._delivered()
                return
            error = failure
            if not retry:
                break
        self._failed(error)
        raise DeliveryError(self.name, notification, error)

    async def _post(self, body: bytes, delivery: str) -> tuple[bool, str | None]:
        """One attempt: (worth retrying, the error or None when delivered)."""
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            DELIVERY_HEADER: delivery,
        }
        try:
            async with self.session.post(
                self.url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                if 200 <= resp.status < 300:
                    return False, None
                return (
                    resp.status >= 500 or resp.status == 429,
                    f"{self.url} answered {resp.status}",
                )
        except TimeoutError:
            return True, f"{self.url} did not answer within {self._timeout.total} s"
        except aiohttp.ClientError as exc:
            return True, f"{self.url}: {type(exc).__name__}: {exc}"

    def _delivered(self) -> None:
        if self.status.up is False:
            log.info(
                "notification channel %s delivers again (%d notifications failed so far)",
                self.name,
                self.status.failed,
            )
        self.status.up = True
        self.status.delivered += 1

    def _failed(self, error: str) -> None:
        self.status.failed += 1
        self.status.last_error = error
        if self.status.up is not False:
            log.warning(
                "notification channel %s cannot deliver: %s "
                "(further failures are counted, not logged, until it recovers)",
                self.name,
                error,
            )
        self.status.up = False


class SmsGatewayChannel(WebhookChannel):
    """An SMS gateway reached by a signed webhook (same headers and retries as WebhookChannel);
    the body is `{"to": [phone numbers], "text": "..."}` with the numbers of the notified role.

    `roster` maps a role (RosterLevel.role) to its phone numbers, as data.
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        roster: Mapping[str, Sequence[str]],
        *,
        timeout_s: float,
        session: aiohttp.ClientSession,
        name: str = "sms",
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            url,
            secret,
            timeout_s=timeout_s,
            session=session,
            name=name,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            clock=clock,
        )
        for role, numbers in roster.items():
            if isinstance(numbers, str) or not numbers:
                raise ValueError(f"{name}: role {role!r} needs a list of phone numbers")
            bad = [n for n in numbers if not _PHONE.match(n)]
            if bad:
                raise ValueError(f"{name}: role {role!r} has invalid phone number {bad[0]!r}")
        self.roster = {role: list(numbers) for role, numbers in roster.items()}
        self._unknown_roles: set[str] = set()

    def payload(self, notification: Notification) -> Mapping[str, Any]:
        return {"to": self.roster[notification.role], "text": notification.text}

    async def send(self, notification: Notification) -> None:
        if notification.role not in self.roster:
            # A roster gap, not a gateway outage: say it once per role.
            self.status.failed += 1
            reason = f"no phone numbers for role {notification.role!r} in the SMS roster"
            if notification.role not in self._unknown_roles:
                self._unknown_roles.add(notification.role)
                log.warning("notification channel %s: %s", self.name, reason)
            raise DeliveryError(self.name, notification, reason)
        await super().send(notification)


# ---------------------------------------------------------------------------------------------
# WebSocket fan-out


class WebSocketChannel:
    """Hands notifications to the web layer's WebSocket connections: each listener gets a queue
    of lists of `Notification.as_dict()` (the shape of AlarmEngine.listen). Sending never waits:
    a listener that falls `LISTENER_BACKLOG` behind is dropped and receives None (reload)."""

    def __init__(self, name: str = "websocket", backlog: int = LISTENER_BACKLOG) -> None:
        self.name = name
        self.status = ChannelStatus(name)
        self.events = Fanout(backlog)

    async def send(self, notification: Notification) -> None:
        self.events.publish([notification.as_dict()])
        self.status.up = True
        self.status.delivered += 1


# ---------------------------------------------------------------------------------------------
# All channels together


class Notifier:
    """Sends each notification on every channel at once; a failing or slow channel neither
    stops nor delays the delivery on the others."""

    def __init__(self, channels: Iterable[Channel]) -> None:
        self.channels = list(channels)
        names = [c.name for c in self.channels]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"notification channel name {', '.join(twice)} is used twice")
        self._broken: set[str] = set()
        self._pending: set[asyncio.Task[list[str]]] = set()

    async def send(self, notification: Notification) -> list[str]:
        """Deliver on all channels; returns the names of those that failed."""
        results = await asyncio.gather(*(self._one(c, notification) for c in self.channels))
        return [c.name for c, ok in zip(self.channels, results, strict=True) if not ok]

    def submit(self, notification: Notification) -> asyncio.Task[list[str]]:
        """Send in the background, so a scheduler never waits on slow channels."""
        task = asyncio.create_task(self.send(notification), name=f"notify {notification.key}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def drain(self) -> None:
        """Wait for every submitted notification (at shutdown)."""
        while self._pending:
            await asyncio.gather(*self._pending)

    async def _one(self, channel: Channel, notification: Notification) -> bool:
        try:
            await channel.send(notification)
        except DeliveryError:
            return False  # counted and logged by the channel
        except Exception:
            # A defect in a channel: logged with its traceback once until the channel works.
            if channel.name not in self._broken:
                self._broken.add(channel.name)
                log.exception("notification channel %s failed unexpectedly", channel.name)
            return False
        self._broken.discard(channel.name)
        return True


class WebhookTarget(BaseModel):
    """A receiver of signed notifications (`[[notify.webhooks]]`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "webhook"
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret: Annotated[str, Field(min_length=16)]
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class SmsTarget(WebhookTarget):
    """An SMS gateway: a webhook flavour with phone numbers per roster role (`[notify.sms]`)."""

    name: str = "sms"
    roster: dict[str, list[str]]


class NotifySettings(BaseModel):
    """The `[notify]` table: escalation policy and delivery channels besides the WebSocket."""

    model_config = ConfigDict(extra="forbid")
    escalation: EscalationPolicy = DEFAULT_POLICY
    webhooks: list[WebhookTarget] = []
    sms: SmsTarget | None = None

    def channels(self, session: aiohttp.ClientSession) -> list[Channel]:
        out: list[Channel] = [
            WebhookChannel(w.url, w.secret, timeout_s=w.timeout_s, session=session, name=w.name)
            for w in self.webhooks
        ]
        if self.sms is not None:
            s = self.sms
            out.append(
                SmsGatewayChannel(
                    s.url, s.secret, s.roster, timeout_s=s.timeout_s, session=session, name=s.name
                )
            )
        return out
