"""Where the app's data comes from: Massive.com with the configured key, or the local sandbox.

:func:`resolve_backend` reads the configuration once per app process:

* a key is configured → the real service (``mode="massive"``);
* no key → the app starts the sandbox (REST, WebSocket and S3 on 127.0.0.1, a synthetic market) and
  says so in a banner (``mode="sandbox"``); its quota state and caches live in ``<home>/sandbox`` so
  they never mix with a real account's;
* no key and ``MASSIVE_UI_SANDBOX=off`` → the pages still open, and every action that needs the key
  explains how to configure one (``mode="no_key"``).

``MASSIVE_UI_SANDBOX=on`` uses the sandbox even when a key is configured (demos), and
``MASSIVE_UI_SANDBOX_SPEED`` sets how fast the sandbox's market clock runs (default 30, as the built-in sandbox).
The UI is a face of the package, like the CLI's ``demo`` command, so it may start the sandbox; the
library below it never does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, Mapping

from ..config import DEFAULT_REST_URL, DEFAULT_SANDBOX_SPEED, Settings, load_settings
from ..errors import ConfigurationError
from ..schema import NEW_YORK
from .logic import UiMessage

log = logging.getLogger(__name__)

SANDBOX_ENV = "MASSIVE_UI_SANDBOX"
SPEED_ENV = "MASSIVE_UI_SANDBOX_SPEED"
Mode = Literal["massive", "sandbox", "no_key"]
#: Optional sandbox sides and the modules each needs (moto is a test dependency, so a plain
#: ``massive-feeds[ui]`` install runs the sandbox without S3 and Auto falls back to REST).
SANDBOX_SIDES: dict[str, tuple[str, ...]] = {
    "websocket": ("websockets", "massive_feeds.sandbox.ws"),
    "s3": ("moto", "boto3", "massive_feeds.sandbox.s3"),
}


@dataclass
class Backend:
    """The resolved data source: ``settings`` to pass to every library call, and the sandbox if one runs."""

    settings: Settings
    mode: Mode
    sandbox: Any = field(default=None, repr=False)
    problem: str | None = None  # why the sandbox could not start, when it could not
    forced: bool = False  # sandbox chosen by MASSIVE_UI_SANDBOX=on although a key is configured

    @property
    def is_sandbox(self) -> bool:
        return self.mode == "sandbox"

    def today(self) -> date:
        """The market's "today": the sandbox clock's date, else New York's date."""
        if self.sandbox is not None:
            return self.sandbox.clock.now().date()
        return datetime.now(NEW_YORK).date()

    @property
    def dataset_tags(self) -> tuple[str, ...]:
        """Tags added to every dataset saved from the app (sandbox data is marked as such)."""
        return ("sandbox",) if self.is_sandbox else ()

    @property
    def recordings_dir(self) -> Path:
        """Where the recorder keeps raw event logs (beside the datasets folder: ``data/live_recorded``)."""
        return self.settings.datasets_dir.parent / "live_recorded"

    def banner(self) -> UiMessage | None:
        """The notice shown on every page (``None`` on the real service)."""
        if self.mode == "sandbox":
            sb = self.sandbox
            parts = ["REST"] + (["WebSocket"] if sb is None or sb.ws is not None else []) + (
                ["S3 flat files"] if sb is None or sb.s3 is not None else [])
            return UiMessage(
                "info", f"Sandbox mode ({SANDBOX_ENV}=on)" if self.forced else "Sandbox mode: no API key configured",
                f"this app started a local Massive-compatible sandbox ({', '.join(parts)} on 127.0.0.1) "
                "serving a synthetic market. Prices are not real.",
                f"Unset {SANDBOX_ENV} and restart to use Massive.com with your key." if self.forced else
                "Set MASSIVE_API_KEY (environment or ./api_keys.properties) and restart to use Massive.com.",
            )
        if self.mode == "no_key":
            return UiMessage(
                "warning", "No API key configured",
                "fetching and streaming need a Massive.com key" + (f" ({self.problem})" if self.problem else "") + ".",
                "Set MASSIVE_API_KEY (environment or ./api_keys.properties) and restart, or unset "
                "MASSIVE_UI_SANDBOX=off to try the app on the local sandbox.",
            )
        return None

    def describe(self) -> str:
        """One line for the sidebar: where data comes from and the plan (never the key)."""
        where = "local sandbox" if self.is_sandbox else ("Massive.com" if self.mode == "massive" else "no source")
        return f"Data: {where} · plan {self.settings.plan.name}"

    def close(self) -> None:
        """Stop the sandbox this backend started (if any)."""
        sb, self.sandbox = self.sandbox, None
        if sb is not None:
            sb.stop()
            log.info("UI sandbox stopped")


def sandbox_preference(environ: Mapping[str, str] | None = None) -> str:
    """``auto`` (default), ``on`` or ``off`` from ``MASSIVE_UI_SANDBOX``."""
    value = (os.environ if environ is None else environ).get(SANDBOX_ENV, "auto").strip().lower()
    aliases = {"": "auto", "1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
    value = aliases.get(value, value)
    if value not in ("auto", "on", "off"):
        raise ConfigurationError(f"{SANDBOX_ENV} must be auto, on or off, got {value!r}")
    return value


def sandbox_speed(environ: Mapping[str, str] | None = None) -> float:
    """The sandbox market clock's speed from ``MASSIVE_UI_SANDBOX_SPEED`` (default
    :data:`~massive_feeds.config.DEFAULT_SANDBOX_SPEED`, as the library's built-in sandbox)."""
    default = f"{DEFAULT_SANDBOX_SPEED:g}"
    text = (os.environ if environ is None else environ).get(SPEED_ENV, default).strip() or default
    try:
        speed = float(text)
    except ValueError:
        raise ConfigurationError(f"{SPEED_ENV} must be a number, got {text!r}") from None
    if not 0 < speed <= 10_000:
        raise ConfigurationError(f"{SPEED_ENV} must be between 0 and 10000, got {speed}")
    return speed


def config_fingerprint(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """A digest of what the backend depends on (``MASSIVE_*`` variables, working folder): the cache key
    of the app's backend, so a changed configuration gets a new one. Holds no readable secret."""
    env = os.environ if environ is None else environ
    items = sorted((k, v) for k, v in env.items() if k.startswith("MASSIVE_"))
    raw = repr((items, str(cwd or Path.cwd()))).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def start_sandbox(base: Settings, speed: float = 1.0) -> tuple[Any, Settings]:
    """Start the sandbox (every side available in this install) and settings pointing at it, with its
    quota state and caches under ``<home>/sandbox`` and datasets in the configured folder."""
    from ..sandbox import Sandbox

    sides: dict[str, Any] = {side: all(importlib.util.find_spec(m) is not None for m in mods) for side, mods in SANDBOX_SIDES.items()}
    sb = Sandbox(clock_speed=speed, **sides).start()
    try:
        # sandbox settings (MASSIVE_SANDBOX=1) keep their quota and caches under <home>/sandbox by themselves
        settings = sb.settings(home=base.home, datasets_dir=base.datasets_dir)
    except BaseException:
        sb.stop()
        raise
    log.info("UI sandbox started: %s", sb.describe())
    return sb, settings


def resolve_backend(environ: Mapping[str, str] | None = None) -> Backend:
    """Settings for the app: the real service when a key is configured, else the sandbox (see module doc).

    Raises:
        ConfigurationError: a bad ``MASSIVE_*`` value (plan, sandbox switch, speed).
    """
    environ = os.environ if environ is None else environ
    preference = sandbox_preference(environ)
    base = load_settings(environ=environ)
    if not (environ.get(SANDBOX_ENV) or "").strip():  # MASSIVE_SANDBOX=0/1 speaks for the app too
        if base.sandbox == "off":
            preference = "off"
        elif base.sandbox == "on" and base.rest_url == DEFAULT_REST_URL:
            preference = "on"  # (with endpoints set, they are a shared sandbox: used as configured)
    if preference == "off" or (preference == "auto" and base.api_key):
        # "off" holds for the library calls too: no key means the missing-key message, not a sandbox
        return Backend(base if base.api_key else base.with_overrides(sandbox="off"),
                       "massive" if base.api_key else "no_key")
    try:
        sb, settings = start_sandbox(base, sandbox_speed(environ))
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - the app must open and say why
        log.exception("could not start the sandbox")
        if base.api_key:
            return Backend(base, "massive")
        return Backend(base, "no_key", problem=f"the local sandbox could not start: {exc}")
    return Backend(settings, "sandbox", sb, forced=bool(base.api_key))
