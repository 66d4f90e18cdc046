"""The configuration file: regions, enterprises, hazard sources, devices, points and cameras.

One TOML file describes the monitored tree. It is validated with pydantic at load; a bad file
raises ConfigError naming the file, the line, the key path, the bad value and what was expected.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

# Query parameters that carry credentials in device URLs (e.g. Dahua's
# `…/realmonitor?channel=1&user=admin&password=…`).
_SECRET_PARAM = re.compile(
    r"(?i)^(user(name)?|login|pass(word|wd)?|pwd|token|secret|key|auth\w*|sig\w*)$"
)


def redact_url(url: str) -> str:
    """The URL without its user:password nor credential query parameters (for logs and the
    API)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    path, q, query = path.partition("?")
    if q:
        params = (p.partition("=") for p in query.split("&"))
        query = "&".join(
            f"{k}{eq}***" if eq and _SECRET_PARAM.match(k) else f"{k}{eq}{v}" for k, eq, v in params
        )
    return f"{scheme}://{host}{slash}{path}{q}{query}"


Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _host(value: str) -> str:
    """A host name (RFC 1123) or an IP address."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if (
        not value
        or len(value) > 253
        or all(label.isdigit() for label in labels)  # looks like an IPv4 address, is not one
        or not all(_LABEL.fullmatch(label) for label in labels)
    ):
        raise ValueError("must be a host name or an IP address")
    return value


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
Host = Annotated[str, AfterValidator(_host)]
DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]
Order = Literal["big", "little"]
ModbusTable = Literal["holding", "input", "coil", "discrete"]

REGISTER_COUNT: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Model):
    """Process limits HH > H > L > LL (the alarm engine's defaults for the point)."""

    hh: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - the domain's name for the low limit
    ll: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        named = [
            (n, v)
            for n, v in (("hh", self.hh), ("h", self.h), ("l", self.l), ("ll", self.ll))
            if v is not None
        ]
        for (n1, v1), (n2, v2) in itertools.pairwise(named):
            if not v1 > v2:
                raise ValueError(f"limit {n1}={v1} must be greater than {n2}={v2}")
        return self


class PointConfig(_Model):
    """A monitoring point (监测点): one measured value of a device."""

    code: Code
    name: str
    unit: str = ""
    kind: str = ""  # e.g. level, pressure, temperature, gas, wind_speed
    gas: str | None = None  # for gas detectors: the gas measured, e.g. NH3, Cl2, LPG
    hazard_source: Code | None = None  # defaults to the device's hazard source
    data_type: DataType = "float32"
    # Modbus address of the value
    table: ModbusTable | None = None
    address: Annotated[int, Field(ge=0, le=65535)] | None = None
    byte_order: Order | None = None  # defaults to the device's
    word_order: Order | None = None
    # OPC-UA NodeId string, e.g. "ns=2;s=E002.TK1.LT"
    node: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    range: tuple[float, float] | None = None  # instrument range (量程)
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _check(self) -> PointConfig:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range {list(self.range)} must be [low, high] with low < high")
        if self.table in ("coil", "discrete") and self.data_type != "bool":
            raise ValueError(f"a {self.table} holds a bool, not data_type {self.data_type!r}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def register_count(self) -> int:
        return REGISTER_COUNT[self.data_type]


# A device's communication-status point: code suffix and kind (`_DeviceBase.link_point`).
LINK_SUFFIX = "link"
DEVICE_LINK_KIND = "device_link"
LINK_HOLD_S = 366 * 86400.0  # a link's value holds until the next change (`held_points`)


class _DeviceBase(_Model):
    code: Code
    name: str = ""
    hazard_source: Code | None = None
    period_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    points: list[PointConfig] = Field(min_length=1)

    @property
    def link_code(self) -> str:
        """The code of the device's communication-status point (see `link_point`)."""
        return f"{self.code}.{LINK_SUFFIX}"

    def link_point(self) -> PointConfig:
        """The device's communication status as a monitoring point of its own (通讯状态): its
        collector reports 1 while it reads the device and COMM_FAIL while it cannot. A lost
        device then raises one alarm, on this point, and its points' quality alarms are
        suppressed by design meanwhile (alarms.engine.DeviceGroup)."""
        # Its hazard source: the device's, else the one all its points have, if they share one.
        shared = {p.hazard_source for p in self.points}
        return PointConfig(
            code=self.link_code,
            name=f"{self.name or self.code} 通讯状态",
            kind=DEVICE_LINK_KIND,
            hazard_source=self.hazard_source or (shared.pop() if len(shared) == 1 else None),
            data_type="bool",
        )

    @property
    def loss_report_s(self) -> float:
        """At most how long after a device's last sample its collector reports it lost
        (COMM_FAIL on its points and link): a polled device's next poll, timed out."""
        return self.period_s + self.timeout_s

    @property
    def hold_s(self) -> float | None:
        """For a device that sends a value only when it changes (so the age of a point's last
        sample says little of the device; a lost session sends COMM_FAIL): how long a value may
        go unsent yet still hold. None for devices that send every period (a polled Modbus
        device, an MQTT gateway publishing each period)."""
        return None


class ModbusDevice(_DeviceBase):
    protocol: Literal["modbus"]
    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit_id: Annotated[int, Field(ge=0, le=255)] = 1
    byte_order: Order = "big"
    word_order: Order = "big"
    max_block: Annotated[int, Field(ge=1, le=125)] = 125  # registers per read (≤ 125, Modbus)

    @model_validator(mode="after")
    def _addresses(self) -> ModbusDevice:
        for p in self.points:
            if p.table is None or p.address is None:
                raise ValueError(f"point {p.code!r}: a modbus point needs table and address")
        # Registers of two values that overlap are a typo (a float32 at 100 and the next value
        # at 101): refused at the second. The same value read twice (same table, address and
        # width, e.g. two scalings) is allowed.
        spans = sorted(
            (p.table or "", p.address or 0, i, p.register_count) for i, p in enumerate(self.points)
        )
        for (table, a1, i1, n1), (table2, a2, i2, n2) in itertools.pairwise(spans):
            if table == table2 and a2 < a1 + n1 and (a1, n1) != (a2, n2):
                p, q = self.points[min(i1, i2)], self.points[max(i1, i2)]
                raise _At(
                    ("points", max(i1, i2), "address"),
                    f"point {q.code!r} ({_registers(q)}) overlaps point {p.code!r} "
                    f"({_registers(p)})",
                )
        return self


def _registers(p: PointConfig) -> str:
    """E.g. "holding 100–101"."""
    start = p.address or 0
    return f"{p.table} {start}–{start + p.register_count - 1}"


class OpcUaDevice(_DeviceBase):
    protocol: Literal["opcua"]
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://")]
    publishing_interval_ms: Annotated[float, Field(gt=0)] = 500
    sampling_interval_ms: Annotated[float, Field(ge=0)] = 250
    # A subscription sends a value only when it changes. While the session is up, a value that
    # has not changed for this long is published again, stamped on the server's clock (a
    # heartbeat, as a process historian's maximum time between stored values): a steady value
    # still shows in trends, and a gap of over two heartbeats means the value was not known.
    republish_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None
    username: str | None = None
    password: str | None = None

    @property
    def hold_s(self) -> float | None:
        """Two heartbeats (`republish_s`)."""
        return 2 * self.republish_s

    @model_validator(mode="after")
    def _nodes(self) -> OpcUaDevice:
        for p in self.points:
            if not p.node:
                raise ValueError(f"point {p.code!r}: an opcua point needs node (a NodeId string)")
        if self.security_policy != "None" and (
            self.certificate is None or self.private_key is None
        ):
            raise ValueError("security_policy Basic256Sha256 needs certificate and private_key")
        return self


MQTT_SILENCE_PERIODS = 3  # a gateway quiet for this many periods is COMM_FAIL


class MqttDevice(_DeviceBase):
    """A gateway that publishes to anjian/v1/{enterprise}/{device}/data."""

    protocol: Literal["mqtt"]

    @property
    def loss_report_s(self) -> float:
        """A gateway is lost once quiet for MQTT_SILENCE_PERIODS periods."""
        return MQTT_SILENCE_PERIODS * self.period_s


Device = Annotated[ModbusDevice | OpcUaDevice | MqttDevice, Field(discriminator="protocol")]


class ResponsiblePerson(_Model):
    """One of a hazard source's three 包保责任人 (warnings are pushed to them first)."""

    duty: Literal["principal", "technical", "operational"]  # 主要 / 技术 / 操作负责人
    name: str
    username: str | None = None  # their anjian account, when they have one
    phone: str | None = None


class HazardSource(_Model):
    """A major hazard source (重大危险源), GB 18218-2018."""

    code: Code
    name: str
    unit_type: Literal["storage", "production"] = "storage"  # 储存单元 / 生产单元
    grade: Literal[1, 2, 3, 4] | None = None  # 一级 .. 四级
    responsible: list[ResponsiblePerson] = []
    lon: float | None = None
    lat: float | None = None


class CameraDevice(_DeviceBase):
    """A camera's health points as the registry and the alarm rules see them (built from the
    [[enterprises.cameras]] table, not configured as a device)."""

    protocol: Literal["video"] = "video"


# Camera health, published as monitoring points by video/ (issue #6): code suffix, name, unit,
# kind. "video offline" and "picture frozen" alarms are ordinary rules on them (video.health).
CAMERA_HEALTH: tuple[tuple[str, str, str, str], ...] = (
    ("online", "视频在线", "", "video_online"),
    ("fps", "视频帧率", "fps", "video_fps"),
    ("bitrate", "视频码率", "kbit/s", "video_bitrate"),
    ("keyframe_age", "关键帧间隔", "s", "video_keyframe_age"),
    ("frozen", "画面静止时长", "s", "video_frozen"),
)
CAMERA_HEALTH_PERIOD_S = 1.0


class Camera(_Model):
    """A video camera (视频监控) at an enterprise, usually watching a hazard source."""

    code: Code
    name: str
    url: Annotated[str, Field(pattern=r"^rtsps?://")]  # may hold user:password: never shown
    transport: Literal["tcp", "udp"] = "tcp"
    ring_seconds: Annotated[float, Field(gt=0, le=600)] | None = None  # default: [video]
    hazard_source: Code | None = None
    points: list[Code] = []  # linked points: an alarm on one of them saves a clip
    position: str = ""  # where it is and what it looks at, e.g. "1号储罐区东北角"
    lon: float | None = None
    lat: float | None = None

    def health_code(self, suffix: str) -> str:
        return f"{self.code}.{suffix}"

    def device(self) -> CameraDevice:
        return CameraDevice(
            code=self.code,
            name=self.name,
            hazard_source=self.hazard_source,
            period_s=CAMERA_HEALTH_PERIOD_S,
            points=[
                PointConfig(
                    code=self.health_code(suffix),
                    name=f"{self.name} {name}",
                    unit=unit,
                    kind=kind,
                    data_type="bool" if suffix == "online" else "float32",
                )
                for suffix, name, unit, kind in CAMERA_HEALTH
            ],
        )


class FirstOutGroup(_Model):
    """A first-out group (首出报警组): points of which only the first to alarm is annunciated;
    the others are suppressed by design until that leader returns to normal (e.g. the trips
    and limits of one unit, where one cause sets off the rest)."""

    code: Code
    name: str = ""
    points: Annotated[list[Code], Field(min_length=2)]


class _At(ValueError):
    """A cross-reference error inside a model, with the key path below it (for the line)."""

    def __init__(self, loc: tuple[int | str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class SensitiveTarget(_Model):
    """A sensitive target near an enterprise (周边环境敏感目标): a toxic-gas 二级 alarm while the
    wind blows toward one issues a red warning (alarms/warning_rules.toml)."""

    name: str
    kind: Literal["school", "hospital", "residential", "public", "other"] = "other"
    lon: Annotated[float, Field(ge=-180, le=180)]
    lat: Annotated[float, Field(ge=-90, le=90)]


class Enterprise(_Model):
    """A production and business unit (生产经营单位)."""

    code: Code
    name: str
    region: Annotated[str, Field(pattern=r"^\d{6}$")]
    industry: str = ""
    address: str = ""
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    hazard_sources: list[HazardSource] = []
    devices: list[Device] = []
    cameras: list[Camera] = []
    first_out_groups: list[FirstOutGroup] = []
    sensitive_targets: list[SensitiveTarget] = []

    @model_validator(mode="after")
    def _references(self) -> Enterprise:
        _unique("hazard source", _codes("hazard_sources", self.hazard_sources))
        _unique("first-out group", _codes("first_out_groups", self.first_out_groups))
        _unique("device", _codes("devices", self.devices))
        point_codes = [
            (("devices", di, "points", pi, "code"), p.code)
            for di, d in enumerate(self.devices)
            for pi, p in enumerate(d.points)
        ]
        _unique("point", iter(point_codes))
        _unique("camera", _codes("cameras", self.cameras))
        # A camera's health points live on a device of the camera's code.
        _unique(
            "device or camera",
            itertools.chain(_codes("devices", self.devices), _codes("cameras", self.cameras)),
        )
        _unique(
            "point (devices' link and cameras' health points included)",
            itertools.chain(
                # Links first: a clash is reported at the configured point, the one to rename.
                ((("devices", di, "code"), d.link_code) for di, d in enumerate(self.devices)),
                point_codes,
                (
                    (("cameras", ci, "code"), c.health_code(h[0]))
                    for ci, c in enumerate(self.cameras)
                    for h in CAMERA_HEALTH
                ),
            ),
        )
        sources = {h.code for h in self.hazard_sources}
        points = {p.code for d in self.devices for p in d.points}
        at: Loc
        for di, d in enumerate(self.devices):
            named: list[tuple[Loc, str | None]] = [(("devices", di), d.hazard_source)]
            named += [
                (("devices", di, "points", pi), p.hazard_source) for pi, p in enumerate(d.points)
            ]
            for at, hs in named:
                if hs is not None and hs not in sources:
                    raise _At(
                        (*at, "hazard_source"),
                        f"device {d.code!r} names unknown hazard source {hs!r}",
                    )
        for ci, c in enumerate(self.cameras):
            if c.hazard_source is not None and c.hazard_source not in sources:
                raise _At(
                    ("cameras", ci, "hazard_source"),
                    f"camera {c.code!r} names unknown hazard source {c.hazard_source!r}",
                )
            for k, p in enumerate(c.points):
                if p not in points:
                    raise _At(
                        ("cameras", ci, "points", k), f"camera {c.code!r} names unknown point {p!r}"
                    )
        grouped: dict[str, str] = {}
        for gi, g in enumerate(self.first_out_groups):
            for pi, p in enumerate(g.points):
                at = ("first_out_groups", gi, "points", pi)
                if p not in points:
                    raise _At(at, f"first-out group {g.code!r} names unknown point {p!r}")
                if p in grouped:
                    raise _At(
                        at,
                        f"point {p!r} is already in first-out group {grouped[p]!r}: a point "
                        "belongs to one group at most",
                    )
                grouped[p] = g.code
        return self


class Region(_Model):
    """An administrative division, GB/T 2260 code."""

    code: Annotated[str, Field(pattern=r"^\d{6}$")]
    province: str
    city: str = ""


class MqttSettings(_Model):
    host: Host = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "anjian/v1"


class DatabaseSettings(_Model):
    url: str | None = None
    # DOMAIN.md §1.5: electronic records of 重大危险源 kept at least 30 days (原安监总局令第40号).
    retention_days: Annotated[int, Field(ge=30)] = 30
    rollup_retention_days: Annotated[int, Field(ge=1)] = 400


class SecuritySettings(_Model):
    """Security policy (等保 level 3, DOMAIN.md §8): secure defaults, tunable per deployment."""

    # Password rules [M: common 等保 test practice, DOMAIN.md §8].
    password_min_length: Annotated[int, Field(ge=8)] = 8
    password_min_classes: Annotated[int, Field(ge=1, le=4)] = 3  # of upper, lower, digit, other
    password_history: Annotated[int, Field(ge=0)] = 5  # no reuse of the last N
    password_max_age_days: Annotated[int, Field(ge=1)] = 90
    # Login-failure handling (等保 8.1.4.1 b).
    lockout_failures: Annotated[int, Field(ge=1)] = 5
    lockout_minutes: Annotated[int, Field(ge=1)] = 30
    login_attempts_per_minute: Annotated[int, Field(ge=1)] = 20  # per source address
    # Idle timeout: administrators 15 min, others 30 (DOMAIN.md §8 [D] checklist).
    idle_minutes_admin: Annotated[int, Field(ge=1, le=30)] = 15
    idle_minutes: Annotated[int, Field(ge=1, le=30)] = 30
    # Second factor (TOTP): mandatory for the three administrators and command leaders.
    totp_roles: list[str] = ["sysadmin", "secadmin", "auditor", "leader"]
    # 网络安全法 Art. 21: network logs kept at least 6 months (DOMAIN.md §8).
    audit_retention_days: Annotated[int, Field(ge=180)] = 180
    max_request_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    tls_certificate: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> SecuritySettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("tls_certificate and tls_key go together")
        for role in ("sysadmin", "secadmin", "auditor", "leader"):
            if role not in self.totp_roles:
                raise ValueError(
                    f"totp_roles must include {role!r}: its second factor is mandatory"
                )
        return self


class Config(_Model):
    # Datum of the positions in this file: WGS-84 (GPS), or GCJ-02 as copied from a Chinese web
    # map; GCJ-02 positions are converted to WGS-84 on load, so the model always holds WGS-84.
    coords: Literal["wgs84", "gcj02"] = "wgs84"
    regions: list[Region] = []
    enterprises: list[Enterprise] = []
    mqtt: MqttSettings | None = None
    database: DatabaseSettings = DatabaseSettings()
    security: SecuritySettings = SecuritySettings()
    # Alarm rule defaults and per-point overrides; validated by alarms.rules.AlarmSettings
    # (streams knows nothing of alarms).
    alarms: dict[str, Any] = {}
    # Escalation policy and notification channels; validated by alarms.notify.NotifySettings.
    notify: dict[str, Any] = {}
    # Video settings (ring length, clip times, health alarm delays); validated by
    # video.settings.VideoSettings.
    video: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _to_wgs84(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("coords") != "gcj02":
            return raw
        from gis.coords import gcj02_to_wgs84

        def convert(table: Any) -> Any:
            if not isinstance(table, dict):
                return table
            lon, lat = table.get("lon"), table.get("lat")
            numbers = [
                v for v in (lon, lat) if isinstance(v, int | float) and not isinstance(v, bool)
            ]
            if len(numbers) != 2:
                return table  # missing or malformed: validation reports it
            wlon, wlat = gcj02_to_wgs84(float(numbers[0]), float(numbers[1]))
            return {**table, "lon": wlon, "lat": wlat}

        enterprises = []
        for e in raw.get("enterprises", []):
            if isinstance(e, dict):
                e = convert(e)
                for key in ("hazard_sources", "cameras"):
                    if isinstance(e.get(key), list):
                        e = {**e, key: [convert(x) for x in e[key]]}
            enterprises.append(e)
        return {**raw, "coords": "wgs84", "enterprises": enterprises}

    @model_validator(mode="after")
    def _references(self) -> Config:
        _unique("region", _codes("regions", self.regions))
        _unique("enterprise", _codes("enterprises", self.enterprises))
        regions = {r.code for r in self.regions}
        for ei, e in enumerate(self.enterprises):
            if regions and e.region not in regions:
                raise _At(
                    ("enterprises", ei, "region"),
                    f"enterprise {e.code!r} names region {e.region!r}, not in [[regions]]",
                )
            if self.mqtt is None and any(d.protocol == "mqtt" for d in e.devices):
                raise ValueError(
                    f"enterprise {e.code!r} has mqtt devices but there is no [mqtt] table"
                )
        return self

    def points(self) -> Iterator[tuple[Enterprise, Device, PointConfig]]:
        for e in self.enterprises:
            for d in e.devices:
                for p in d.points:
                    yield e, d, p

    def link_points(self) -> Iterator[tuple[Enterprise, Device, PointConfig]]:
        """The devices' communication-status points (not in `points()`: they are not read from
        the device, its collector reports them)."""
        for e in self.enterprises:
            for d in e.devices:
                yield e, d, d.link_point()

    def camera_points(self) -> Iterator[tuple[Enterprise, CameraDevice, PointConfig]]:
        """The cameras' health points (not in `points()`: no device collector reads them)."""
        for e in self.enterprises:
            for c in e.cameras:
                d = c.device()
                for p in d.points:
                    yield e, d, p


Loc = tuple[int | str, ...]


def _codes(key: str, items: list[Any]) -> Iterator[tuple[Loc, str]]:
    return (((key, i, "code"), x.code) for i, x in enumerate(items))


def _unique(what: str, codes: Iterator[tuple[Loc, str]]) -> None:
    """Raise at the second use of a code."""
    seen: set[str] = set()
    for at, c in codes:
        if c in seen:
            raise _At(at, f"{what} code {c!r} is used twice")
        seen.add(c)


def held_points(cfg: Config) -> dict[tuple[str, str], float]:
    """(enterprise, point code) → how long its value may go unsent yet still hold, for points
    of devices that report on change only (`hold_s`), and for every device's link point (sent
    when the device comes up or is lost: it holds while the collector says up)."""
    held = {
        (e.code, p.code): hold
        for e in cfg.enterprises
        for d in e.devices
        if (hold := d.hold_s) is not None
        for p in d.points
    }
    held |= {(e.code, link.code): LINK_HOLD_S for e, _, link in cfg.link_points()}
    return held


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    line: int | None
    message: str
    value: Any

    def __str__(self) -> str:
        shown = "" if self.value is _MISSING else f" (got {self.value!r})"
        if len(shown) > 120:  # a whole table says nothing the line does not
            shown = ""
        return f"{self.path or '<top>'}: {self.message}{shown}"


class ConfigError(Exception):
    """A configuration file that cannot be used; str() is the message for the operator."""

    def __init__(self, file: Path | str, problems: list[ConfigProblem]) -> None:
        self.file = str(file)
        self.problems = problems
        lines = [f"{self.file}: invalid configuration ({len(problems)} problem(s))"]
        lines += [
            f"  {self.file}:{p.line}: {p}" if p.line else f"  {self.file}: {p}" for p in problems
        ]
        super().__init__("\n".join(lines))


_MISSING = object()


def load_config(file: Path | str) -> Config:
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            path, [ConfigProblem("", None, f"cannot read the file: {exc}", _MISSING)]
        ) from exc
    return parse_config(text, path)


def parse_config(text: str, file: Path | str = "<config>") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = int(m.group(1)) if m else None
        raise ConfigError(
            file, [ConfigProblem("", line, f"TOML syntax error: {exc}", _MISSING)]
        ) from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(file, validation_problems(text, exc)) from None


def validation_problems(
    text: str, exc: ValidationError, section: tuple[str, ...] = ()
) -> list[ConfigProblem]:
    """The problems of a validation of the file's text (or of its table `section`), each with
    its key path, line and value."""
    raw = tomllib.loads(text)
    lines = _key_lines(text)
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x in _UNION_TAGS))
        loc = (*section, *loc)
        msg = err["msg"].removeprefix("Value error, ")
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, _At):
            loc = (*loc, *cause.loc)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # Point at the discriminating key itself, not at the whole table.
            key = err.get("ctx", {}).get("discriminator", "").strip("'")
            loc = (*loc, key)
            expected = err.get("ctx", {}).get("expected_tags", "")
            if expected:
                msg = f"must be one of {expected}"
            else:
                msg = f"is missing: one of {', '.join(sorted(_UNION_TAGS))}"
        problems.append(ConfigProblem(_dotted(loc), _line_for(lines, loc), msg, _lookup(raw, loc)))
    return problems


def problem_at(text: str, loc: tuple[int | str, ...], message: str) -> ConfigProblem:
    """A problem found outside validation (e.g. by the alarm rules), at the line of `loc`."""
    return ConfigProblem(_dotted(loc), _line_for(_key_lines(text), loc), message, _MISSING)


_UNION_TAGS = {"modbus", "opcua", "mqtt"}


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lookup(raw: Any, loc: tuple[int | str, ...]) -> Any:
    cur = raw
    for part in loc:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return cur


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*("?[A-Za-z0-9_-]+"?)\s*=')
_NAME = re.compile(r'"[^"]*"|[^.\s"]+')  # the parts of a dotted table name, quoted or bare


def _key_lines(text: str) -> dict[tuple[int | str, ...], int]:
    """Map key paths (with array-of-tables indices) to the line where each is written."""
    lines: dict[tuple[int | str, ...], int] = {}
    counts: dict[tuple[int | str, ...], int] = {}
    current: tuple[int | str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _HEADER.match(line):
            names = [n.strip('"') for n in _NAME.findall(m.group(2))]
            # Resolve each parent name to the latest element of its array of tables.
            path: tuple[int | str, ...] = ()
            for i, name in enumerate(names):
                path += (name,)
                last = i == len(names) - 1
                if last and m.group(1) == "[[":
                    idx = counts.get(path, 0)
                    counts[path] = idx + 1
                    # A new element resets the counters of the arrays nested in it.
                    for k in [k for k in counts if len(k) > len(path) and k[: len(path)] == path]:
                        del counts[k]
                    path += (idx,)
                elif not last and path in counts:
                    path += (counts[path] - 1,)
            current = path
            lines.setdefault(current, number)
        elif m := _KEY.match(line):
            lines[(*current, m.group(1).strip('"'))] = number
    return lines


def _line_for(lines: dict[tuple[int | str, ...], int], loc: tuple[int | str, ...]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None
