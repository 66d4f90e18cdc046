"""OPC-UA collector: one asyncua client session and subscription per device.

Data changes are buffered by a cheap handler and published as one SampleBatch per publish response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from datetime import UTC, timedelta

import numpy as np
import numpy.typing as npt
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import (
    DataChangeEvent,
    OverflowPolicy,
    StatusChangeEvent,
    SubEvent,
    Subscription,
)
from asyncua.crypto import security_policies, uacrypto
from asyncua.ua.status_codes import StatusCodes as _S
from asyncua.ua.uaerrors import UaStringParsingError
from cryptography import x509

from collectors.base import Backoff, DeviceCollector, raise_if_cancelled
from streams import Hub, Quality, SampleBatch, now_ns
from streams.config import OpcUaDevice

log = logging.getLogger("anjian.collectors.opcua")

# The codes by which a server or gateway says "I cannot reach the field device" (通讯中断).
_COMM_FAIL_CODES = np.array(
    [
        _S.BadCommunicationError,
        _S.BadNotConnected,
        _S.BadServerNotConnected,
        _S.BadNoCommunication,
    ],
    np.uint32,
)
# Read results that mean the configured NodeId is wrong, not that the value is bad.
_CONFIG_CODES = frozenset(
    {_S.BadNodeIdUnknown, _S.BadNodeIdInvalid, _S.BadAttributeIdInvalid, _S.BadNotReadable}
)
_EPOCH = ua.DateTime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class _ConnectionLost(Exception):
    pass


def _ts_ns(dv: ua.DataValue) -> int:
    dt = dv.SourceTimestamp or dv.ServerTimestamp
    if dt is None:
        return now_ns()
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US * 1000


def qualities(codes: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
    """Map OPC-UA StatusCodes to qualities (severity bits, then the specific codes we know)."""
    severity = codes >> 30
    q = np.where(
        severity == 0, Quality.GOOD, np.where(severity == 1, Quality.UNCERTAIN, Quality.BAD)
    ).astype(np.uint8)
    code = codes & np.uint32(0xFFFF0000)
    q[np.isin(code, _COMM_FAIL_CODES)] = Quality.COMM_FAIL
    q[code == _S.BadOutOfRange] = Quality.OUT_OF_RANGE
    return q


class OpcUaCollector(DeviceCollector):
    """Subscribes to a device's points on an OPC-UA server (通过 OPC-UA 订阅采集)."""

    device: OpcUaDevice

    def __init__(
        self,
        enterprise: str,
        device: OpcUaDevice,
        point_ids: Mapping[str, int],
        hub: Hub,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(enterprise, device, point_ids, hub, backoff=backoff)
        cfgs = [p.config for p in self.points]
        self._scale = np.array([c.scale for c in cfgs], np.float64)
        self._offset = np.array([c.offset for c in cfgs], np.float64)
        self._low = np.array([c.range[0] if c.range else -math.inf for c in cfgs], np.float64)
        self._high = np.array([c.range[1] if c.range else math.inf for c in cfgs], np.float64)
        self._last_ts = np.zeros(len(cfgs), np.int64)
        self._last_status = np.zeros(len(cfgs), np.uint32)
        # What each point last published, and when (our clock; 0: nothing in this session).
        self._last_raw = np.full(len(cfgs), math.nan)
        self._published_ns = np.zeros(len(cfgs), np.int64)
        # Point index -> why its NodeId cannot be used (a configuration problem, BAD quality).
        self.problems: dict[str, str] = {}
        self._nodeids: dict[int, ua.NodeId] = {}
        self._index: dict[ua.NodeId, int] = {}
        for i, c in enumerate(cfgs):
            assert c.node is not None
            try:
                nodeid = ua.NodeId.from_string(c.node)
            except UaStringParsingError:
                self._problem(i, f"node {c.node!r} is not a valid NodeId string")
                continue
            if nodeid in self._index:
                other = cfgs[self._index[nodeid]].code
                self._problem(i, f"node {c.node!r} is already used by point {other!r}")
                continue
            self._nodeids[i] = nodeid
            self._index[nodeid] = i
        self._handles: dict[int, int] = {}
        self._idx: list[int] = []
        self._ts: list[int] = []
        self._val: list[float] = []
        self._code: list[int] = []
        self._pending = asyncio.Event()
        self._lost: asyncio.Event = asyncio.Event()
        self._lost_reason = ""

    def _problem(self, index: int, message: str) -> None:
        code = self.points[index].config.code
        if code not in self.problems:
            log.error("%s: point %r: configuration problem: %s", self._name, code, message)
        self.problems[code] = message
        self.status.rejected["node_unusable"] = len(self.problems)

    async def run(self) -> None:
        flusher = asyncio.create_task(self._flush_loop(), name=f"opcua-flush {self._name}")
        try:
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    raise_if_cancelled()  # a client's clean-up may have replaced it
                    await self._flush()
                    await self.failed(_describe(exc))
                    # After COMM_FAIL even an unchanged value must be published again.
                    self._last_ts[:] = 0
                    self._published_ns[:] = 0
                await self.sleep_backoff()
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _session(self) -> None:
        d = self.device
        client = Client(d.endpoint, timeout=d.timeout_s, watchdog_intervall=max(1.0, d.period_s))
        # Servers cap the session timeout (asyncua at 10 min); asking for less avoids a warning.
        client.session_timeout = 120_000
        self._lost = asyncio.Event()
        client.connection_lost_callback = self._on_connection_lost
        try:
            async with asyncio.timeout(4 * d.timeout_s + 2):
                await self._secure(client)
                await client.connect()
                sub = await self._subscribe(client)
            await self.succeeded()
            raise_if_cancelled()  # one that came with a reply while connecting
            await self._consume(sub)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(d.timeout_s):
                    await client.disconnect()

    async def _secure(self, client: Client) -> None:
        d = self.device
        if d.username is not None:
            client.set_user(d.username)
            client.set_password(d.password or "")
        if d.security_policy == "None":
            return
        assert d.certificate is not None and d.private_key is not None
        cert = await uacrypto.load_certificate(str(d.certificate))
        with contextlib.suppress(x509.ExtensionNotFound):
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            # The server checks that the client's ApplicationUri is the one in its certificate.
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
            if uris:
                client.application_uri = uris[0]
        await client.set_security(
            security_policies.SecurityPolicyBasic256Sha256,
            certificate=str(d.certificate),
            private_key=str(d.private_key),
            server_certificate=str(d.server_certificate) if d.server_certificate else None,
            mode=getattr(ua.MessageSecurityMode, d.security_mode),
        )

    async def _subscribe(self, client: Client) -> Subscription:
        """One batched Read to check the nodes and get initial values, then one subscribe call."""
        indices = list(self._nodeids)
        nodes = [client.get_node(self._nodeids[i]) for i in indices]
        results = await client.read_attributes(nodes) if nodes else []
        live: list[int] = []
        live_nodes = []
        for i, node, dv in zip(indices, nodes, results, strict=True):
            code = dv.StatusCode.value if dv.StatusCode is not None else _S.Good
            if code in _CONFIG_CODES:
                self._problem(
                    i, f"node {self.points[i].config.node!r}: {ua.StatusCode(ua.UInt32(code)).name}"
                )
            else:
                live.append(i)
                live_nodes.append(node)
                self._append(i, dv)
        sub = await client.create_subscription(
            self.device.publishing_interval_ms,
            None,
            queue_maxsize=max(1000, 4 * len(self.points)),
            # Falling behind is a lost connection: reconnecting resends every current value.
            overflow=OverflowPolicy.DISCONNECT,
        )
        self._handles.clear()
        if live:
            results_sub = await sub.subscribe_data_change(
                live_nodes, sampling_interval=ua.Double(self.device.sampling_interval_ms)
            )
            for i, r in zip(live, results_sub, strict=True):
                if isinstance(r, ua.StatusCode):
                    nid = self.points[i].config.node
                    self._problem(i, f"node {nid!r} cannot be monitored: {r.name}")
        self._publish_problems()
        return sub

    def _publish_problems(self) -> None:
        now = now_ns()
        for i, p in enumerate(self.points):
            if p.config.code in self.problems:
                self._idx.append(i)
                self._ts.append(now)
                self._val.append(math.nan)
                self._code.append(_S.BadConfigurationError)
        self._pending.set()

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._lost_reason = _describe(exc)
        self._lost.set()

    async def _consume(self, sub: Subscription) -> None:
        reader = asyncio.create_task(self._read_events(sub))
        watcher = asyncio.create_task(self._lost.wait())
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            done, _ = await asyncio.wait({reader, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            watcher.cancel()
            heartbeat.cancel()
        if reader in done:
            reader.result()  # raises _ConnectionLost
            raise _ConnectionLost("subscription closed")
        raise _ConnectionLost(f"connection to {self.device.endpoint} lost: {self._lost_reason}")

    async def _heartbeat(self) -> None:
        """While the session is up, each value unchanged for `republish_s` is published again,
        with its quality. It is stamped on the server's clock (its last source time plus the
        time since), so a change the server stamps right after it is never taken for older."""
        every_s = self.device.republish_s
        every_ns = int(every_s * 1e9)
        while True:
            await asyncio.sleep(min(every_s / 4, 5.0))
            since = now_ns() - self._published_ns
            due = np.flatnonzero((self._published_ns > 0) & (since >= every_ns))
            if not len(due):
                continue
            self._idx.extend(due.tolist())
            self._ts.extend((self._last_ts[due] + since[due]).tolist())
            self._val.extend(self._last_raw[due].tolist())
            self._code.extend(self._last_status[due].tolist())
            self._pending.set()

    async def _read_events(self, sub: Subscription) -> None:
        # Every notification of one publish response is queued at once, so this loop drains
        # them without yielding and the flush task then publishes them as one batch.
        event: SubEvent
        async for event in sub:
            if isinstance(event, DataChangeEvent):
                mi = event.data.monitored_item
                i = self._handles.get(mi.ClientHandle)
                if i is None:
                    node = event.data.subscription_data.node
                    assert node is not None
                    i = self._handles[mi.ClientHandle] = self._index[node.nodeid]
                self._append(i, mi.Value)
                self._pending.set()
            elif isinstance(event, StatusChangeEvent):
                status = event.notification.Status
                if status is not None and status.is_bad():
                    raise _ConnectionLost(f"subscription status {status.name}")

    def _append(self, i: int, dv: ua.DataValue | None) -> None:
        if dv is None:
            return
        code = dv.StatusCode.value if dv.StatusCode is not None else _S.Good
        v = dv.Value.Value if dv.Value is not None else None
        if isinstance(v, int | float):
            x = float(v)
        else:
            x = math.nan
            if code < 0x80000000:
                code = _S.BadTypeMismatch
        self._idx.append(i)
        self._ts.append(_ts_ns(dv))
        self._val.append(x)
        self._code.append(code)

    async def _flush_loop(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self._idx:
            return
        idx = np.array(self._idx, np.intp)
        ts = np.array(self._ts, np.int64)
        raw = np.array(self._val, np.float64)
        codes = np.array(self._code, np.uint32)
        self._idx, self._ts, self._val, self._code = [], [], [], []
        # The first notification of a new subscription repeats what the initial Read returned.
        fresh = (ts != self._last_ts[idx]) | (codes != self._last_status[idx])
        if not fresh.all():
            idx, ts, raw, codes = idx[fresh], ts[fresh], raw[fresh], codes[fresh]
        self._last_ts[idx] = ts
        self._last_status[idx] = codes
        self._last_raw[idx] = raw
        self._published_ns[idx] = now_ns()
        if not len(idx):
            return
        value = raw * self._scale[idx] + self._offset[idx]
        q = qualities(codes)
        outside = (value < self._low[idx]) | (value > self._high[idx])
        q[outside & (q <= Quality.UNCERTAIN)] = Quality.OUT_OF_RANGE
        self.status.reads += 1
        self.status.last_success_ns = now_ns()
        await self.publish(SampleBatch(ts, self.point_array[idx], value, q))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
