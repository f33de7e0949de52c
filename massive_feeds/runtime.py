"""The runtime context: resolved settings and every process-wide object of massive_feeds, in one place.

A :class:`Runtime` holds

* **settings resolution** — :meth:`Runtime.settings` turns configured (or given) settings into the ones a
  call uses. This is the *only* seam through which the keyless default reaches the sandbox: with no API
  key (``MASSIVE_SANDBOX=auto``, the default) or with ``MASSIVE_SANDBOX=1``, it starts the embedded
  sandbox (:mod:`massive_feeds.sandbox`, imported lazily, on 127.0.0.1 and free ports; each side — REST,
  WebSocket, S3 — on first need), says so once per process on stderr, and returns settings pointing at
  it whose caches and quota state live under ``<home>/sandbox``. ``MASSIVE_SANDBOX=0`` forbids it (a
  missing key is then a :class:`~massive_feeds.errors.MissingCredentialsError`). Settings whose
  ``MASSIVE_SANDBOX=1`` endpoints already point at a running sandbox (``massive-feeds sandbox
  --print-env``) are used as they are: no second sandbox;
* **shared objects** by kind and key — quota managers, streaming connectors, Backtrader stores, the
  boto3 session — through :meth:`Runtime.shared`;
* **HTTP sessions**, one ``requests.Session`` per thread (requests does not promise a session is safe
  across threads), through :meth:`Runtime.http_session`.

The default instance (:func:`current`) lives as long as the process and is closed at exit (stopping an
embedded sandbox). Tests or notebooks that want a fresh one enter another::

    with Runtime() as rt:           # current() is rt inside the block (in every thread)
        df = fetch_data("AAPL", "2024-03-04", "2024-03-08")
    # rt closed: its connectors, sessions and sandbox are gone; the default instance is current again
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import threading
import weakref
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Mapping, TypeVar

from .config import DEFAULT_REST_URL, DEFAULT_S3_BUCKET, DEFAULT_S3_ENDPOINT, DEFAULT_WS_URL, Secret, Settings, load_settings
from .errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import requests

log = logging.getLogger("massive_feeds")
T = TypeVar("T")

SANDBOX_EXTRA = 'pip install "massive-feeds[sandbox]"'
#: Endpoint of a sandbox side that is not started yet. Transports resolve settings with their side in
#: ``need`` before connecting, so this address is never dialled; if it were, ``.invalid`` never resolves.
PENDING_SIDE = "http://sandbox-side-not-started.invalid"
#: Modules each optional sandbox side needs.
SIDE_MODULES: dict[str, tuple[str, ...]] = {"websocket": ("websockets",), "s3": ("moto", "boto3", "werkzeug")}
SIDES = ("rest", "websocket", "s3")

_announced: set[str] = set()
_announce_lock = threading.Lock()


def side_available(side: str) -> bool:
    """Whether this install can run the sandbox's ``side`` (``rest`` always can)."""
    return all(importlib.util.find_spec(m) is not None for m in SIDE_MODULES.get(side, ()))


def announce(key: str, message: str) -> None:
    """Log ``message`` as a warning once per process for ``key`` (the sandbox notice)."""
    with _announce_lock:
        if key in _announced:
            return
        _announced.add(key)
    log.warning(message)


class Runtime:
    """Settings resolution, shared objects, HTTP sessions and the embedded sandbox (module docstring).

    Args:
        environ: the environment layer for :func:`~massive_feeds.config.load_settings` (default: the
            live ``os.environ`` at each call).
        cwd: folder whose ``api_keys.properties`` is read (default: the working directory at each call).
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self._environ = environ
        self._cwd = cwd
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, Hashable], Any] = {}
        self._local = threading.local()
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._sandbox: Any = None
        self._previous: list[Runtime | None] = []
        self.closed = False

    def __repr__(self) -> str:
        sb = self._sandbox
        state = "closed" if self.closed else (f"sandbox at {sb.rest_url}" if sb is not None else "no sandbox")
        kinds = sorted({kind for kind, _ in self._objects})
        return f"Runtime({state}, shared={kinds})"

    # --- settings -------------------------------------------------------------------------------------
    def load_settings(self, **overrides: Any) -> Settings:
        """Configured settings (arguments > environment > files), before the keyless default applies."""
        return load_settings(cwd=self._cwd, environ=self._environ, **overrides)

    def settings(self, settings: Settings | None = None, *, api_key: str | None = None,
                 need: Iterable[str] = ("rest",)) -> Settings:
        """The settings a call runs with: ``settings`` (default: configured ones) with ``api_key`` applied,
        then the keyless default — see the module docstring. ``need`` names the sandbox sides the caller
        is about to use (``rest``, ``websocket``, ``s3``); an embedded sandbox starts those on demand.

        Raises:
            ConfigurationError: the sandbox is wanted but this install lacks its optional packages.
        """
        base = (settings if settings is not None else self.load_settings()).with_overrides(api_key=api_key)
        if base.sandbox == "off" or (base.sandbox == "auto" and base.api_key):
            return base
        if base.sandbox == "on" and configured_endpoints(base) and not self._is_embedded(base):
            # configured on purpose (the exports of `massive-feeds sandbox`): logged, and the data is labelled
            log.info("using the sandbox's %s endpoint(s) (MASSIVE_SANDBOX=1): a synthetic market, prices are "
                     "not real", "/".join(configured_endpoints(base)))
            return base
        return self._embedded_settings(base, set(need))

    def _is_embedded(self, settings: Settings) -> bool:
        sb = self._sandbox
        return sb is not None and sb.rest is not None and settings.rest_url == sb.rest_url

    def _embedded_settings(self, base: Settings, need: set[str]) -> Settings:
        unknown = need - set(SIDES)
        if unknown:
            raise ValueError(f"unknown sandbox sides {sorted(unknown)}; use {SIDES}")
        sb = self._ensure_sandbox(base, need)
        s3 = sb.s3 is not None or side_available("s3")
        key_id, secret = (Secret(sb.s3_access_key_id), Secret(sb.s3_secret_access_key)) if s3 else (None, None)
        return replace(  # everything but the endpoints and keys stays as configured (home, plan, folders)
            base, sandbox="on", api_key=Secret(sb.api_key), rest_url=sb.rest_url,
            ws_url=sb.ws.url if sb.ws is not None else PENDING_SIDE,
            s3_endpoint=sb.s3.endpoint if sb.s3 is not None else PENDING_SIDE,
            s3_bucket=sb.s3.bucket if sb.s3 is not None else base.s3_bucket,
            s3_access_key_id=key_id, s3_secret_access_key=secret,
        )

    def _ensure_sandbox(self, base: Settings, need: set[str]) -> Any:
        """The embedded sandbox with the ``need``-ed sides running (started here on first use)."""
        missing = [side for side in need if not side_available(side)]
        if missing:
            raise MissingDependencyError(
                f"the built-in sandbox needs optional packages for its {' and '.join(missing)} side "
                f"({', '.join(m for s in missing for m in SIDE_MODULES[s])}): {SANDBOX_EXTRA}; "
                "or set MASSIVE_API_KEY to use Massive.com"
            )
        with self._lock:
            if self.closed:
                raise ConfigurationError("this massive_feeds runtime was closed; enter a new Runtime()")
            sb = self._sandbox
            if sb is None:
                try:
                    from .sandbox import Sandbox  # the one import of the sandbox by the library
                except ImportError as exc:
                    raise MissingDependencyError(
                        f"the built-in sandbox cannot start ({exc.name or exc} is missing): {SANDBOX_EXTRA}; "
                        "or set MASSIVE_API_KEY to use Massive.com"
                    ) from None
                sb = Sandbox(rest=True, clock_speed=base.sandbox_speed, clock_start=base.sandbox_start)
                sb.start()
                self._sandbox = sb
                why = _sandbox_reason(base)
                announce("embedded",
                         f"{why}: this process uses the built-in sandbox (a synthetic market "
                         f"served on 127.0.0.1; prices are not real; its quota and caches live in "
                         f"{base.home / 'sandbox'}). Set MASSIVE_API_KEY to use Massive.com; MASSIVE_SANDBOX=0 "
                         "turns the sandbox off.")
            sides = {side: side in need for side in ("websocket", "s3")}
            if any(sides.values()):
                sb.ensure(**sides)
            return sb

    @property
    def sandbox(self) -> Any:
        """The embedded sandbox this runtime started, or ``None``."""
        return self._sandbox

    # --- shared objects -----------------------------------------------------------------------------
    def shared(self, kind: str, key: Hashable, factory: Callable[[], T],
               alive: Callable[[T], bool] | None = None) -> T:
        """The object of ``kind`` for ``key``, built by ``factory()`` on first use (or when ``alive`` says
        the held one is finished, e.g. a closed connector). One per runtime, shared by every thread."""
        with self._lock:
            obj = self._objects.get((kind, key))
            if obj is None or (alive is not None and not alive(obj)):
                obj = self._objects[(kind, key)] = factory()
            return obj

    def forget(self, kind: str) -> list[Any]:
        """Drop every shared object of ``kind`` and return them (the caller closes them)."""
        with self._lock:
            keys = [k for k in self._objects if k[0] == kind]
            return [self._objects.pop(k) for k in keys]

    # --- HTTP -----------------------------------------------------------------------------------------
    def http_session(self) -> "requests.Session":
        """This thread's ``requests.Session`` (connection pool), created on first use. Sessions are never
        shared between threads; a thread's session goes away with the thread, or at :meth:`close`."""
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            self._local.session = session
            with self._lock:
                self._sessions.add(session)
        return session

    # --- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the shared objects that can be closed, the HTTP sessions and the embedded sandbox."""
        with self._lock:
            self.closed = True
            objects, self._objects = list(self._objects.values()), {}
            sessions, self._sessions = list(self._sessions), weakref.WeakSet()
            sb, self._sandbox = self._sandbox, None
        for obj in objects:
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - closing the rest matters more
                    log.debug("closing %r failed: %s", obj, exc)
        for session in sessions:
            session.close()
        if sb is not None:
            sb.stop()

    def __enter__(self) -> "Runtime":
        global _active
        with _state_lock:
            self._previous.append(_active)
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        with _state_lock:
            _active = self._previous.pop() if self._previous else None
        self.close()


_state_lock = threading.Lock()
_active: Runtime | None = None
_default: Runtime | None = None


def current() -> Runtime:
    """The runtime in use: the innermost entered :class:`Runtime`, else the process's default instance."""
    global _default
    active = _active
    if active is not None:
        return active
    with _state_lock:
        if _default is None or _default.closed:
            _default = Runtime()
        return _default


def resolve_settings(settings: Settings | None = None, *, api_key: str | None = None,
                     need: Iterable[str] = ("rest",)) -> Settings:
    """:meth:`Runtime.settings` of the current runtime: the settings a call that talks to a data source
    runs with (the keyless default applied)."""
    return current().settings(settings, api_key=api_key, need=need)


def configured_endpoints(settings: Settings) -> list[str]:
    """The sides (``rest``, ``websocket``, ``s3``) whose endpoint is configured away from Massive's. With
    ``MASSIVE_SANDBOX=1`` any of them means "a sandbox is already running there" (e.g. one serving only S3):
    the embedded sandbox must not start and replace it."""
    defaults = (("rest", settings.rest_url, DEFAULT_REST_URL), ("websocket", settings.ws_url, DEFAULT_WS_URL),
                ("s3", settings.s3_endpoint, DEFAULT_S3_ENDPOINT))
    return [side for side, value, default in defaults if value != default]


def settings_for_source(settings: Settings | None, data_source: str | None) -> Settings:
    """Settings that reach the data source a dataset came from (``df.attrs["data_source"]``), so splits
    for its prices come from the same market: ``"sandbox"`` → a sandbox, ``"massive"`` → never a sandbox
    (without a real key that is a loud :class:`~massive_feeds.errors.MissingCredentialsError`, not a
    synthetic answer). Anything else → ``settings`` as configured."""
    settings = settings if settings is not None else current().load_settings()
    if data_source == "sandbox" and settings.sandbox != "on":
        return settings.with_overrides(sandbox="on")
    if data_source == "massive" and settings.sandbox != "off":
        if settings.sandbox == "on" and configured_endpoints(settings):  # endpoints and keys of a sandbox
            return replace(settings, sandbox="off", api_key=None, rest_url=DEFAULT_REST_URL,
                           ws_url=DEFAULT_WS_URL, s3_endpoint=DEFAULT_S3_ENDPOINT, s3_bucket=DEFAULT_S3_BUCKET,
                           s3_access_key_id=None, s3_secret_access_key=None)
        return settings.with_overrides(sandbox="off")
    return settings


def _close_default() -> None:
    if _default is not None:
        logging.disable(logging.INFO)  # the process is ending: servers saying "closing" helps nobody
        _default.close()


atexit.register(_close_default)

__all__ = ["PENDING_SIDE", "Runtime", "current", "resolve_settings", "settings_for_source", "side_available"]


def _sandbox_reason(base: Settings) -> str:
    """Why the embedded sandbox starts, as the notice says it: the variable only when it is really set."""
    import os

    from .config import parse_sandbox_mode

    try:
        by_variable = parse_sandbox_mode(os.environ.get("MASSIVE_SANDBOX") or "auto") == "on"
    except Exception:  # noqa: BLE001 - a bad value is reported where settings are loaded
        by_variable = False
    if base.sandbox == "on" and by_variable:
        return "MASSIVE_SANDBOX=1"
    if not base.api_key:
        return "no API key configured"
    return "sandbox data asked for (sandbox='on', or data saved from the sandbox)"
