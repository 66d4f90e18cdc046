"""A real OPC-UA server (asyncua) exposing the simulated plant's OPC-UA devices.

Each point is a variable at exactly its `PointConfig.node` NodeId, refreshed from the plant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, timedelta
from pathlib import Path

from asyncua import ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from cryptography.x509.oid import ExtendedKeyUsageOID

from collectors.sim.ports import free_port_block
from streams.config import OpcUaDevice, PointConfig

log = logging.getLogger("anjian.sim.opcua")

NAMESPACE_URI = "urn:anjian:sim"
# The first namespace a server registers gets index 2 (0 is OPC UA's, 1 the server's own),
# which is what configurations write: "ns=2;s=E002.TK1.LT".
NAMESPACE_INDEX = 2
APPLICATION_URI = "urn:anjian:sim:opcua-server"

_VARIANT: dict[str, ua.VariantType] = {
    "bool": ua.VariantType.Boolean,
    "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16,
    "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32,
    "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double,
}


class _PasswordUsers(UserManager):
    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User)
        return None


class _Variable:
    __slots__ = ("config", "nodeid", "override", "status")

    def __init__(self, config: PointConfig) -> None:
        assert config.node is not None
        self.config = config
        self.nodeid = ua.NodeId.from_string(config.node)
        self.override: float | None = None
        self.status = StatusCodes.Good


class OpcUaSimServer:
    """Serves OPC-UA devices of the plant; `read_values(device_code)` gives point code → value.

    With `certificate_dir`, only Basic256Sha256 (Sign, SignAndEncrypt) endpoints are offered, with a
    self-signed certificate kept in that directory (`server_certificate` is its path). With
    `users`, only username/password identities from that mapping are accepted.
    """

    def __init__(
        self,
        devices: Sequence[OpcUaDevice],
        read_values: Callable[[str], Mapping[str, float]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        update_interval_s: float = 0.5,
        certificate_dir: Path | None = None,
        users: Mapping[str, str] | None = None,
        clock_offset_s: float = 0.0,
    ) -> None:
        self.devices = list(devices)
        self.read_values = read_values
        self.host = host
        self.port = port or free_port_block(host)
        self.update_interval_s = update_interval_s
        # The server's clock minus ours: a field device's clock is rarely set right.
        self.clock_offset = timedelta(seconds=clock_offset_s)
        self.certificate_dir = certificate_dir
        self.users = users
        self.endpoint = f"opc.tcp://{host}:{self.port}/anjian/"
        self._vars: dict[str, dict[str, _Variable]] = {
            d.code: {p.code: _Variable(p) for p in d.points} for d in self.devices
        }
        self._server: Server | None = None
        self._running = False
        self._updater: asyncio.Task[None] | None = None

    @property
    def server_certificate(self) -> Path | None:
        return None if self.certificate_dir is None else self.certificate_dir / "server-cert.der"

    async def start(self) -> None:
        """Start listening (again, after `stop`, on the same port: a server restart)."""
        if self._running:
            return
        if self._server is None:
            self._server = await self._build()
        # A restart keeps the address space but drops every session and subscription.
        await self._server.start()
        self._running = True
        await self._update_all(overrides=True)
        self._updater = asyncio.create_task(self._update_loop(), name="opcua-sim-update")
        log.info("simulated OPC-UA server listening at %s", self.endpoint)

    async def _build(self) -> Server:
        server = Server(user_manager=_PasswordUsers(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("anjian simulated plant")
        await server.set_application_uri(APPLICATION_URI)
        if self.certificate_dir is not None:
            await self._setup_security(server)
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        ns = await server.register_namespace(NAMESPACE_URI)
        if ns != NAMESPACE_INDEX:
            raise RuntimeError(f"simulated OPC-UA namespace got index {ns}, not {NAMESPACE_INDEX}")
        objects = server.nodes.objects
        for device in self.devices:
            folder = await objects.add_object(ns, device.code)
            for var in self._vars[device.code].values():
                p = var.config
                node = await folder.add_variable(
                    var.nodeid,
                    ua.QualifiedName(p.code, var.nodeid.NamespaceIndex),
                    ua.Variant(_raw(p, 0.0), _VARIANT[p.data_type]),
                )
                await node.set_writable(False)
        return server

    async def stop(self) -> None:
        if self._updater is not None:
            self._updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._updater
            self._updater = None
        if self._server is not None and self._running:
            self._running = False
            await self._server.stop()

    async def set_value(
        self, device_code: str, point_code: str, value: float, *, status: str | int = "Good"
    ) -> None:
        """Hold a point at `value` (and an OPC-UA status, e.g. "BadSensorFailure") from now on."""
        var = self._vars[device_code][point_code]
        var.override = value
        var.status = getattr(StatusCodes, status) if isinstance(status, str) else status
        await self._write(var, value)

    async def release(self, device_code: str, point_code: str) -> None:
        """Let a point follow the plant again after `set_value`."""
        var = self._vars[device_code][point_code]
        var.override = None
        var.status = StatusCodes.Good
        await self._update_all()

    async def _setup_security(self, server: Server) -> None:
        assert self.certificate_dir is not None and self.server_certificate is not None
        self.certificate_dir.mkdir(parents=True, exist_ok=True)
        key = self.certificate_dir / "server-key.pem"
        await cert_gen.setup_self_signed_certificate(
            key,
            self.server_certificate,
            APPLICATION_URI,
            socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {},
        )
        await server.load_certificate(str(self.server_certificate))
        await server.load_private_key(str(key))
        server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ]
        )

    async def _update_loop(self) -> None:
        while True:
            await asyncio.sleep(self.update_interval_s)
            try:
                await self._update_all()
            except Exception:
                # The plant is someone else's code: a failing read must not stop the server.
                log.exception("simulated OPC-UA server: reading the plant failed")

    async def _update_all(self, *, overrides: bool = False) -> None:
        for device in self.devices:
            values = self.read_values(device.code)
            for code, var in self._vars[device.code].items():
                if var.override is not None:
                    if overrides:
                        await self._write(var, var.override)
                    continue
                value = values.get(code)
                if value is not None:
                    await self._write(var, value)

    async def _write(self, var: _Variable, value: float) -> None:
        if self._server is None or not self._running:
            return
        now = ua.DateTime.now(UTC) + self.clock_offset
        await self._server.write_attribute_value(
            var.nodeid,
            ua.DataValue(
                ua.Variant(_raw(var.config, value), _VARIANT[var.config.data_type]),
                ua.StatusCode(ua.UInt32(var.status)),
                SourceTimestamp=now,
                ServerTimestamp=now,
            ),
        )


def _raw(p: PointConfig, value: float) -> float | int | bool:
    """The device's raw value for an engineering value (the collector applies scale and offset)."""
    raw = (value - p.offset) / p.scale
    if p.data_type == "bool":
        return bool(round(raw))
    if p.data_type in ("float32", "float64"):
        return raw
    return round(raw)
