"""Roles, permissions and the one table that joins them; who is asking (Principal).

Every HTTP route and WebSocket topic names the permission it needs where it is defined
(`Route`, `TOPICS`); the middleware in `web.auth` enforces it. The three administrators (三员)
hold disjoint permissions and no business permission (等保 level 3, DOMAIN.md §8).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aiohttp import web
from pydantic import BaseModel


class Role(StrEnum):
    DUTY_OFFICER = "duty_officer"  # 值班员
    SHIFT_LEADER = "shift_leader"  # 值班长
    EXPERT = "expert"  # 专家
    LEADER = "leader"  # 指挥长
    ENTERPRISE = "enterprise"  # 生产经营单位 user, bound to one enterprise
    PUBLIC = "public"  # anonymous
    SYSADMIN = "sysadmin"  # 系统管理员
    SECADMIN = "secadmin"  # 安全管理员
    AUDITOR = "auditor"  # 审计管理员

    @property
    def is_admin(self) -> bool:
        return self in ADMIN_ROLES


ADMIN_ROLES = frozenset({Role.SYSADMIN, Role.SECADMIN, Role.AUDITOR})
BUSINESS_ROLES = frozenset(
    {Role.DUTY_OFFICER, Role.SHIFT_LEADER, Role.EXPERT, Role.LEADER, Role.ENTERPRISE}
)


class Permission(StrEnum):
    # Everybody signed in: their own session and password.
    SELF = "self"
    # Monitoring data (business roles; enterprise users only their own enterprise).
    MONITOR_READ = "monitor:read"  # enterprises, points, latest values, series, live values
    # Alarm handling in the centre: acknowledge, shelve, remove from and return to service.
    ALARM_OPERATE = "alarm:operate"
    # Early warnings: the enterprise signs, answers and clears its own; the centre reviews.
    WARNING_ANSWER = "warning:answer"
    WARNING_REVIEW = "warning:review"
    # A hazard source's operating state (运行/开停车/检维修/停用): the centre, or the enterprise
    # for its own sources; maintenance and stopped suppress alarms by design.
    SOURCE_STATE = "source:state"
    # Alarm rules (limits, deadbands, delays…): an engineering change, authorised by the shift
    # leader or the commander, not by the console operator (ISA-18.2 management of change).
    ALARM_RULES = "alarm:rules"
    # Operations (system administrator): health of the pipeline, demo plant control.
    SYSTEM_READ = "system:read"
    SYSTEM_CONTROL = "system:control"
    # Accounts exist or not (system administrator).
    ACCOUNTS_MANAGE = "accounts:manage"
    # Roles, permissions, policies, unlocking, machine tokens (security administrator).
    SECURITY_MANAGE = "security:manage"
    # The audit log (auditor): read and export, nothing else.
    AUDIT_READ = "audit:read"


_BUSINESS = frozenset({Permission.SELF, Permission.MONITOR_READ})
# The centre's staff also see the pipeline's health (the console's status bar).
_CENTRE = _BUSINESS | {
    Permission.SYSTEM_READ,
    Permission.ALARM_OPERATE,
    Permission.WARNING_REVIEW,
    Permission.SOURCE_STATE,
}

# The one permission table (role → permissions). Administrators get no business permission.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.DUTY_OFFICER: _CENTRE,
    Role.SHIFT_LEADER: _CENTRE | {Permission.ALARM_RULES},
    Role.EXPERT: _BUSINESS,
    Role.LEADER: _CENTRE | {Permission.ALARM_RULES},
    Role.ENTERPRISE: _BUSINESS | {Permission.WARNING_ANSWER, Permission.SOURCE_STATE},
    Role.PUBLIC: frozenset(),
    Role.SYSADMIN: frozenset(
        {
            Permission.SELF,
            Permission.SYSTEM_READ,
            Permission.SYSTEM_CONTROL,
            Permission.ACCOUNTS_MANAGE,
        }
    ),
    Role.SECADMIN: frozenset({Permission.SELF, Permission.SECURITY_MANAGE}),
    Role.AUDITOR: frozenset({Permission.SELF, Permission.AUDIT_READ}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request: an account through a session, or a machine through a token."""

    account_id: int | None
    username: str
    role: Role
    enterprise: str | None = None  # set for enterprise users and enterprise-scoped tokens
    permissions: frozenset[Permission] = frozenset()
    session_id: str | None = None  # hash of the session id (never the cookie value itself)
    token_id: int | None = None
    csrf_token: str | None = None  # set when a cookie authenticates: state changes must echo it

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def sees(self, enterprise: str) -> bool:
        """Enterprise scoping: an enterprise-bound principal sees only its own enterprise."""
        return self.enterprise is None or self.enterprise == enterprise


ANONYMOUS = Principal(None, "anonymous", Role.PUBLIC, permissions=ROLE_PERMISSIONS[Role.PUBLIC])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """An HTTP route and what it needs: a permission (None = open to anyone) and its body schema."""

    method: str
    path: str
    handler: Handler
    permission: Permission | None
    summary: str
    body: type[BaseModel] | None = None  # validated before the handler runs: request[BODY]
    query: Mapping[str, str] = field(default_factory=dict)  # parameter → description (OpenAPI)
    # The handler writes its own audit record (login, logout); the middleware skips it.
    self_audited: bool = False


# WebSocket topics (`<kind>:<argument>`) and the permission each needs.
TOPICS: Mapping[str, Permission] = {
    "points": Permission.MONITOR_READ,
    "alarms": Permission.MONITOR_READ,
    "warnings": Permission.MONITOR_READ,
    "notifications": Permission.ALARM_OPERATE,
    "sources": Permission.MONITOR_READ,
}

PRINCIPAL = web.RequestKey("principal", Principal)
ROUTE = web.RequestKey("route", Route)
BODY = web.RequestKey("body", BaseModel)


def json_error(kind: type[web.HTTPException], message: str, **extra: object) -> web.HTTPException:
    """An HTTP error whose JSON body says what was wrong: {"error": message, ...extra}."""
    return kind(
        text=json.dumps({"error": message, **extra}, ensure_ascii=False),
        content_type="application/json",
    )
