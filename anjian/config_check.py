"""The whole configuration file, checked before anything starts: its structure
(streams.config), the tables other packages own ([alarms], [notify], [video]), the alarm rule
each point gets, and the TLS files. Every problem names the file, the line and the reason."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import BaseModel, ValidationError

from alarms.notify import NotifySettings
from alarms.rules import AlarmSettings, RuleError, rules_from_config
from streams.config import Config, ConfigError, ConfigProblem, load_config, problem_at
from streams.config import validation_problems as problems_of
from video.settings import VideoSettings


def check_config_file(file: Path | str) -> Config:
    """The configuration, or ConfigError listing every problem with its line."""
    path = Path(file)
    cfg = load_config(path)
    text = path.read_text(encoding="utf-8")
    problems: list[ConfigProblem] = []
    tables: dict[str, type[BaseModel]] = {
        "alarms": AlarmSettings,
        "notify": NotifySettings,
        "video": VideoSettings,
    }
    for name, model in tables.items():
        try:
            model.model_validate(getattr(cfg, name))
        except ValidationError as exc:
            problems += problems_of(text, exc, (name,))
    if not problems:  # the rules are built with valid [alarms] settings
        problems += _rule_problems(text, cfg)
    problems += _tls_problems(text, cfg)
    if problems:
        raise ConfigError(path, problems)
    return cfg


def _rule_problems(text: str, cfg: Config) -> list[ConfigProblem]:
    settings = AlarmSettings.model_validate(cfg.alarms)
    where: dict[str, tuple[int | str, ...]] = {}
    for ei, e in enumerate(cfg.enterprises):
        for di, d in enumerate(e.devices):
            for pi, p in enumerate(d.points):
                tag = f"{e.code}/{p.code}"
                # A problem of a point with an override is most likely in the override.
                where[tag] = (
                    ("alarms", "points", tag)
                    if tag in settings.points
                    else ("enterprises", ei, "devices", di, "points", pi)
                )
    # rules_from_config says "point TAG: …", or "[alarms.points.'KEY'] names no configured
    # point" for an override of no point.
    for key in settings.points:
        where.setdefault(f"[alarms.points.{key!r}]", ("alarms", "points", key))
    ids = {(e.code, p.code): n for n, (e, _, p) in enumerate(cfg.points())}
    try:
        rules_from_config(cfg, ids, settings)
    except RuleError as exc:
        return [
            problem_at(text, where.get(_subject(message), ("alarms",)), message)
            for message in exc.problems
        ]
    return []


def _subject(message: str) -> str:
    """The point tag or override a rule problem is about."""
    if message.startswith("[alarms.points."):
        return message.partition("]")[0] + "]"
    return message.removeprefix("point ").partition(": ")[0]


def _tls_problems(text: str, cfg: Config) -> list[ConfigProblem]:
    s = cfg.security
    if s.tls_certificate is None or s.tls_key is None:
        return []
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            s.tls_certificate, s.tls_key
        )
    except (OSError, ssl.SSLError) as exc:
        return [
            problem_at(
                text,
                ("security", "tls_certificate"),
                f"cannot load the TLS certificate {s.tls_certificate} and key {s.tls_key}: {exc}",
            )
        ]
    return []
