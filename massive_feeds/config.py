"""Configuration in one place: credentials, endpoints, plan limits and local folders.

Every value is resolved, first match wins, from:

1. explicit arguments to :func:`load_settings` (or to the public functions that accept ``api_key=`` …),
2. environment variables (``MASSIVE_API_KEY`` …),
3. ``./api_keys.properties`` in the working directory (git-ignored; see ``api_keys.properties.example``),
4. the per-user file ``~/.config/massive_feeds/config.properties`` (or ``$MASSIVE_FEEDS_CONFIG``).

Secrets are held in :class:`Secret`, whose ``repr``/``str`` never show the value.

``MASSIVE_SANDBOX`` (:attr:`Settings.sandbox`) is the data-source switch: ``auto`` (default: the embedded
sandbox when no key is configured), ``1``/``on`` (always a sandbox: the endpoints configured, when they
point at a shared one, else the embedded one) or ``0``/``off`` (never). This module only reads it; the
runtime context (:mod:`massive_feeds.runtime`) acts on it.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigurationError, InvalidSettingError, MissingCredentialsError
from .redact import register_secret

log = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://api.massive.com"
DEFAULT_WS_URL = "wss://socket.massive.com"
DEFAULT_S3_ENDPOINT = "https://files.massive.com"
DEFAULT_S3_BUCKET = "flatfiles"
PROPERTIES_FILE = "api_keys.properties"
SANDBOX_MODES = ("auto", "on", "off")
_SANDBOX_ALIASES = {"": "auto", "1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}


def parse_sandbox_mode(value: str | bool | None) -> str:
    """``MASSIVE_SANDBOX`` as ``auto``, ``on`` or ``off`` (``1``/``true``/``yes`` and ``0``/``false``/``no``
    are accepted too); anything else is a :class:`ConfigurationError`."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    text = _SANDBOX_ALIASES.get(text, text)
    if text not in SANDBOX_MODES:
        raise ConfigurationError(f"MASSIVE_SANDBOX must be auto, 1/on or 0/off, got {value!r}")
    return text


class Secret:
    """A credential that never shows its value in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)  # masked in every log line our handlers write (massive_feeds.redact)

    def reveal(self) -> str:
        """The raw value, for the one place that must send it (a header, an auth frame, SigV4)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Plan:
    """Limits of one plan profile. ``None`` means unlimited.

    ``rest_window_seconds`` is the length of the "per minute" window; it is 60 except in tests that
    want a fast limiter.
    """

    name: str
    rest_per_minute: int | None
    rest_per_day: int | None
    ws_max_streams: int | None
    ws_messages_per_minute: int | None
    flatfile_bytes_per_month: int | None
    rest_window_seconds: float = 60.0

    def __post_init__(self) -> None:
        """Limits must be positive (or ``None`` = unlimited): a zero or negative limit is refused here,
        when the plan is configured, instead of failing every later call."""
        for attr in ("rest_per_minute", "rest_per_day", "ws_max_streams", "ws_messages_per_minute",
                     "flatfile_bytes_per_month", "rest_window_seconds"):
            value = getattr(self, attr)
            if value is None and attr != "rest_window_seconds":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidSettingError(
                    f"plan {self.name!r}: {attr} (MASSIVE_PLAN_{attr.upper()}) must be a positive number"
                    f"{'' if attr == 'rest_window_seconds' else ' or unlimited'}, got {value!r}")

    def describe(self) -> str:
        def fmt(v: int | None, unit: str) -> str:
            return "unlimited" if v is None else f"{v:,} {unit}"

        gb = None if self.flatfile_bytes_per_month is None else self.flatfile_bytes_per_month // 10**9
        return (
            f"REST API: {fmt(self.rest_per_day, 'requests/day')}, {fmt(self.rest_per_minute, 'requests/minute')}\n"
            f"WebSocket: {fmt(self.ws_max_streams, 'concurrent symbol streams')}, "
            f"{fmt(self.ws_messages_per_minute, 'messages/minute')}\n"
            f"Flat Files: {fmt(gb, 'GB/month downloads')}"
        )


GB = 10**9

#: Built-in profiles. ``free`` carries the product document's numbers and is our default; ``basic`` is
#: Massive's own documented free tier (5 requests/minute, no daily cap); ``unlimited`` is any paid plan.
PLANS: dict[str, Plan] = {
    "free": Plan("free", 10, 100, 10, 100, 10 * GB),
    "basic": Plan("basic", 5, None, 10, None, 10 * GB),
    "unlimited": Plan("unlimited", None, None, None, None, None),
}

_PLAN_OVERRIDES = {
    # env / properties key -> Plan field
    "MASSIVE_PLAN_REST_PER_MINUTE": "rest_per_minute",
    "MASSIVE_PLAN_REST_PER_DAY": "rest_per_day",
    "MASSIVE_PLAN_WS_MAX_STREAMS": "ws_max_streams",
    "MASSIVE_PLAN_WS_MESSAGES_PER_MINUTE": "ws_messages_per_minute",
    "MASSIVE_PLAN_FLATFILE_BYTES_PER_MONTH": "flatfile_bytes_per_month",
    "MASSIVE_PLAN_REST_WINDOW_SECONDS": "rest_window_seconds",
}


def _user_config_path() -> Path:
    explicit = os.environ.get("MASSIVE_FEEDS_CONFIG")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "massive_feeds" / "config.properties"


#: the built-in sandbox's default clock speed: half a market minute per second, so a 3 s stream shows
#: quotes and a 30 s recording about 15 minute bars (at 1x they showed one quote and 1-3 bars)
DEFAULT_SANDBOX_SPEED = 30.0

#: the datasets folder under ``home`` when ``MASSIVE_DATASETS_DIR`` is not set
DATASETS_FOLDER = "datasets"


def _home_dir() -> Path:
    explicit = os.environ.get("MASSIVE_FEEDS_HOME")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "massive_feeds"


def read_properties(path: Path) -> dict[str, str]:
    """Parse a Java-style ``KEY=value`` file (``#``/``!`` comments, blank lines ignored)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep < 0:
            continue
        key, value = line[:sep].strip(), line[sep + 1 :].strip()
        if value:
            values[key] = value
    return values


def _warn_if_world_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s is readable by other users (mode %o); run `chmod 600 %s` to keep your keys private",
            path, stat.S_IMODE(mode), path,
        )


def _file_sources(cwd: Path | None = None) -> list[dict[str, str]]:
    sources = []
    local = (cwd or Path.cwd()) / PROPERTIES_FILE
    for path in (local, _user_config_path()):
        if path.is_file():
            if path.name == PROPERTIES_FILE:
                _warn_if_world_readable(path)
            sources.append(read_properties(path))
    return sources


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build it with :func:`load_settings`; it is immutable."""

    api_key: Secret | None = None
    s3_access_key_id: Secret | None = None
    s3_secret_access_key: Secret | None = None
    s3_endpoint: str = DEFAULT_S3_ENDPOINT
    s3_bucket: str = DEFAULT_S3_BUCKET
    rest_url: str = DEFAULT_REST_URL
    ws_url: str = DEFAULT_WS_URL
    plan: Plan = PLANS["free"]
    home: Path = field(default_factory=_home_dir)
    #: ``MASSIVE_DATASETS_DIR``: where datasets are saved (``None``: ``<home>/datasets``, one folder per user
    #: whatever the working directory, shared by the library, the CLI and the UI).
    datasets_dir: Path = None  # type: ignore[assignment]  # resolved in __post_init__
    #: ``MASSIVE_SANDBOX``: ``auto``, ``on`` or ``off`` (see the module docstring).
    sandbox: str = "auto"
    #: ``MASSIVE_FEEDS_STORE``: the history store's folder or URL (``None``: ``<home>/store``).
    store: str | None = None
    #: ``MASSIVE_SANDBOX_SPEED``: how fast the built-in sandbox's market clock runs (1 = real time; the default
    #: :data:`DEFAULT_SANDBOX_SPEED` so that live examples show quotes and bars within seconds).
    sandbox_speed: float = DEFAULT_SANDBOX_SPEED
    #: ``MASSIVE_SANDBOX_START``: where the built-in sandbox's market clock starts (an ISO date-time, UTC when it
    #: names no zone; ``None``: 15:30 UTC on the last NYSE session before today), so a run can be repeated on
    #: the same synthetic market whatever day it is.
    sandbox_start: datetime | None = None

    def __post_init__(self) -> None:
        if self.datasets_dir is None:
            object.__setattr__(self, "datasets_dir", Path(self.home) / DATASETS_FOLDER)
        if self.sandbox not in SANDBOX_MODES:
            object.__setattr__(self, "sandbox", parse_sandbox_mode(self.sandbox))
        speed = self.sandbox_speed
        try:
            speed = float(speed)
        except (TypeError, ValueError):
            raise ConfigurationError(f"MASSIVE_SANDBOX_SPEED must be a number, got {speed!r}") from None
        if not 0 < speed <= 10_000:
            raise ConfigurationError(f"MASSIVE_SANDBOX_SPEED must be between 0 and 10000, got {speed:g}")
        object.__setattr__(self, "sandbox_speed", speed)
        if self.sandbox_start is not None:
            object.__setattr__(self, "sandbox_start", _clock_start(self.sandbox_start))

    @property
    def uses_sandbox(self) -> bool:
        """Whether calls with these settings go to a sandbox: ``sandbox="on"``, or ``auto`` without a key
        (the keyless default, applied by :mod:`massive_feeds.runtime`)."""
        return self.sandbox == "on" or (self.sandbox == "auto" and not self.api_key)

    @property
    def source(self) -> str:
        """``"sandbox"`` when these settings reach a sandbox (:attr:`uses_sandbox`), else ``"massive"``."""
        return "sandbox" if self.uses_sandbox else "massive"

    @property
    def data_home(self) -> Path:
        """Where caches, quota state and the default store live: ``home``, or ``<home>/sandbox`` for
        sandbox settings, so sandbox use never touches a real account's quota or caches."""
        return self.home / "sandbox" if self.uses_sandbox else self.home

    @property
    def cache_dir(self) -> Path:
        return self.data_home / "cache"

    @property
    def state_dir(self) -> Path:
        """Where the shared quota state lives (one per user, shared by every process)."""
        return self.data_home / "state"

    def require_api_key(self) -> Secret:
        """The REST/WebSocket key, or a :class:`MissingCredentialsError` that says both ways out."""
        if not self.api_key:
            raise MissingCredentialsError(
                "No API key found. Set MASSIVE_API_KEY in the environment or in ./api_keys.properties "
                f"(copy api_keys.properties.example), or in {_user_config_path()}, or pass api_key=... ; "
                "or use the built-in sandbox (a synthetic market, no key): MASSIVE_SANDBOX=1 or "
                "`massive-feeds --sandbox ...`" + (" (MASSIVE_SANDBOX=0 turned it off)." if self.sandbox == "off" else ".")
            )
        return self.api_key

    def require_s3_credentials(self) -> tuple[Secret, Secret]:
        if not (self.s3_access_key_id and self.s3_secret_access_key):
            raise MissingCredentialsError(
                "No S3 credentials found for flat files. Set MASSIVE_S3_ACCESS_KEY_ID and "
                "MASSIVE_S3_SECRET_ACCESS_KEY (dashboard: API Keys -> 'Accessing Flat Files (S3)'); "
                "they are separate from the REST API key."
            )
        return self.s3_access_key_id, self.s3_secret_access_key

    def with_overrides(self, **kwargs: Any) -> "Settings":
        """A copy with some values replaced; ``None`` values are ignored."""
        given = {k: v for k, v in kwargs.items() if v is not None}
        for key in ("api_key", "s3_access_key_id", "s3_secret_access_key"):
            if isinstance(given.get(key), str):
                given[key] = Secret(given[key])
        for key in ("home", "datasets_dir"):
            if key in given:
                given[key] = Path(given[key]).expanduser()
        if "home" in given and "datasets_dir" not in given and self.datasets_dir == self.home / DATASETS_FOLDER:
            given["datasets_dir"] = given["home"] / DATASETS_FOLDER  # the default follows the home
        if "sandbox" in given:
            given["sandbox"] = parse_sandbox_mode(given["sandbox"])
        if "store" in given:
            given["store"] = str(given["store"])
        return replace(self, **given)


_ENV_KEYS = {
    "MASSIVE_API_KEY": "api_key",
    "MASSIVE_S3_ACCESS_KEY_ID": "s3_access_key_id",
    "MASSIVE_S3_SECRET_ACCESS_KEY": "s3_secret_access_key",
    "MASSIVE_S3_ENDPOINT": "s3_endpoint",
    "MASSIVE_S3_BUCKET": "s3_bucket",
    "MASSIVE_REST_URL": "rest_url",
    "MASSIVE_WS_URL": "ws_url",
    "MASSIVE_FEEDS_HOME": "home",
    "MASSIVE_DATASETS_DIR": "datasets_dir",
    "MASSIVE_SANDBOX": "sandbox",
    "MASSIVE_FEEDS_STORE": "store",
    "MASSIVE_SANDBOX_SPEED": "sandbox_speed",
    "MASSIVE_SANDBOX_START": "sandbox_start",
}


def _clock_start(value: object) -> datetime:
    """``MASSIVE_SANDBOX_START`` as a tz-aware UTC datetime (a naive one is UTC)."""
    try:
        start = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigurationError(f"MASSIVE_SANDBOX_START must be an ISO date-time such as 2026-12-04T15:30:00Z, "
                                 f"got {value!r}") from None
    return start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start.astimezone(timezone.utc)


def _resolve_plan(lookup: Mapping[str, str]) -> Plan:
    name = lookup.get("MASSIVE_PLAN", "free").strip().lower()
    if name not in PLANS and name != "custom":
        raise InvalidSettingError(f"Unknown MASSIVE_PLAN {name!r}; choose one of {sorted(PLANS)} or 'custom'")
    plan = PLANS.get(name, PLANS["free"])
    overrides: dict[str, Any] = {}
    for key, attr in _PLAN_OVERRIDES.items():
        if key in lookup:
            text = lookup[key].strip().lower()
            try:
                if text in ("none", "unlimited", ""):
                    overrides[attr] = None
                else:
                    overrides[attr] = float(text) if attr == "rest_window_seconds" else int(float(text))
            except ValueError:
                raise InvalidSettingError(f"{key} must be a number or 'unlimited', got {lookup[key]!r}") from None
    if overrides:
        plan = replace(plan, name="custom" if name == "custom" else f"{plan.name}+custom", **overrides)
    return plan


def load_settings(cwd: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from arguments, environment, ``./api_keys.properties`` and the user config file.

    Keyword overrides use the :class:`Settings` field names (``api_key="…"``, ``rest_url="…"``,
    ``plan="basic"`` or a :class:`Plan`). ``environ`` replaces ``os.environ`` as the environment layer.
    """
    environ = os.environ if environ is None else environ
    layered: dict[str, str] = {}
    for source in reversed(_file_sources(cwd)):  # user file first, local file wins over it
        layered.update(source)
    layered.update({k: v for k, v in environ.items() if k.startswith("MASSIVE_") and v})

    values: dict[str, Any] = {}
    for key, attr in _ENV_KEYS.items():
        if key in layered:
            values[attr] = layered[key]
    for attr in ("api_key", "s3_access_key_id", "s3_secret_access_key"):
        if attr in values:
            values[attr] = Secret(values[attr])
    for attr in ("home", "datasets_dir"):
        if attr in values:
            values[attr] = Path(values[attr]).expanduser()
    if "sandbox" in values:
        values["sandbox"] = parse_sandbox_mode(values["sandbox"])
    values["plan"] = _resolve_plan(layered)

    plan = overrides.pop("plan", None)
    if isinstance(plan, str):
        plan = _resolve_plan({**layered, "MASSIVE_PLAN": plan})
    unknown = set(overrides) - {f.name for f in fields(Settings)}
    if unknown:
        raise ConfigurationError(f"Unknown settings: {sorted(unknown)}")
    return Settings(**values).with_overrides(plan=plan, **overrides)
