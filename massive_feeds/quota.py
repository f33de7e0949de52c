"""Plan-aware quota: a REST rate limiter and usage counters shared by every process of one user.

State lives in one SQLite file (``<home>/state/quota.sqlite3``). Each REST call (one per page, one per
retry) takes a slot inside an ``IMMEDIATE`` transaction, so several scripts running at once together
still stay inside the plan. The per-minute limit *waits* (logging why); an exhausted daily quota raises
:class:`~massive_feeds.errors.QuotaExceededError` naming the reset time. A 429 from the server blocks
everyone until its ``Retry-After`` and halves the per-minute budget for a few windows.

Flat-file downloads reserve their bytes against the monthly budget before they start.

A damaged database, a full disk or a folder that cannot be written is a one-line
:class:`~massive_feeds.errors.QuotaStateError` naming the file and what to do. A quota file that vanished or was
emptied (0 bytes) while this home had kept one before (``quota.sqlite3.known`` beside it says so) is recreated
with a warning and remembered: :attr:`QuotaStatus.state_lost_at` tells that the calls made that day (and the
flat-file bytes of that month) before that moment cannot be known. A home whose quota file vanished before this
marker existed cannot be told from a first use.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from .config import Plan, Settings, load_settings
from .errors import InvalidSettingError, QuotaExceededError, QuotaStateError
from .runtime import current

log = logging.getLogger(__name__)

#: Extra seconds added to the rate window: a request's slot is taken before it is sent, and it
#: reaches the server a little later, so counting a slightly longer window keeps the server's
#: own sliding window from ever seeing one request too many.
SKEW_GUARD = 0.25
#: After a 429 the per-minute budget is halved for this many windows.
TIGHTEN_WINDOWS = 5
#: The longest pause (seconds) a server's ``Retry-After`` can impose: the REST client raises a
#: ``RateLimitError`` for a longer one instead of waiting, and a stored pause beyond it is ignored.
MAX_SERVER_PAUSE = 120.0
#: a per-minute-limit wait at least this long (seconds) is logged as a warning, shown at the default log level
VISIBLE_WAIT = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rest_calls (ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rest_calls_ts ON rest_calls (ts);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS flatfile_bytes (month TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
"""


def _next_midnight_utc(now: float) -> datetime:
    day = datetime.fromtimestamp(now, timezone.utc).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _midnight_utc(now: float) -> float:
    return _next_midnight_utc(now).timestamp() - 86_400


def _month_key(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m")


def _next_month_utc(now: float) -> datetime:
    d = datetime.fromtimestamp(now, timezone.utc)
    return datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class QuotaStatus:
    """A snapshot of usage against the plan. ``None`` limits/remainders mean unlimited."""

    plan: str
    rest_used_today: int
    rest_daily_limit: int | None
    rest_used_this_window: int
    rest_per_minute: int | None
    rest_resets_at: datetime
    flatfile_bytes_used: int
    flatfile_bytes_limit: int | None
    flatfile_resets_at: datetime
    ws_max_streams: int | None
    ws_messages_per_minute: int | None
    #: When the quota file was found vanished or emptied and started again, if that was this month: the REST
    #: calls made that day and the flat-file bytes of that month before this moment cannot be known.
    state_lost_at: datetime | None = None

    @property
    def rest_remaining_today(self) -> int | None:
        if self.rest_daily_limit is None:
            return None
        return max(self.rest_daily_limit - self.rest_used_today, 0)

    @property
    def flatfile_bytes_remaining(self) -> int | None:
        if self.flatfile_bytes_limit is None:
            return None
        return max(self.flatfile_bytes_limit - self.flatfile_bytes_used, 0)

    @property
    def level(self) -> str:
        """``green`` (> 50 REST calls left or unlimited), ``orange`` (20–50), ``red`` (< 20), ``exhausted``."""
        return rest_level(self.rest_remaining_today)

    def as_dict(self) -> dict[str, object]:
        return {
            "plan": self.plan, "level": self.level,
            "rest_used_today": self.rest_used_today, "rest_remaining_today": self.rest_remaining_today,
            "rest_daily_limit": self.rest_daily_limit, "rest_per_minute": self.rest_per_minute,
            "rest_used_this_window": self.rest_used_this_window,
            "rest_resets_at": self.rest_resets_at.isoformat(),
            "flatfile_bytes_used": self.flatfile_bytes_used,
            "flatfile_bytes_remaining": self.flatfile_bytes_remaining,
            "flatfile_bytes_limit": self.flatfile_bytes_limit,
            "flatfile_resets_at": self.flatfile_resets_at.isoformat(),
            "ws_max_streams": self.ws_max_streams, "ws_messages_per_minute": self.ws_messages_per_minute,
            "state_lost_at": self.state_lost_at.isoformat() if self.state_lost_at else None,
        }

    def __str__(self) -> str:
        def n(v: int | None) -> str:
            return "unlimited" if v is None else f"{v:,}"

        gb = lambda b: "unlimited" if b is None else f"{b / 1e9:.2f} GB"  # noqa: E731
        return (
            f"Plan: {self.plan}\n"
            f"REST: {self.rest_used_today:,} used today, {n(self.rest_remaining_today)} left "
            f"[{self.level}] (resets {self.rest_resets_at:%Y-%m-%d %H:%M} UTC); "
            f"{n(self.rest_per_minute)} per minute\n"
            f"Flat files: {gb(self.flatfile_bytes_used)} used this month, {gb(self.flatfile_bytes_remaining)} left "
            f"(resets {self.flatfile_resets_at:%Y-%m-%d})\n"
            f"WebSocket: {n(self.ws_max_streams)} symbol streams, {n(self.ws_messages_per_minute)} messages/minute"
            + (f"\nWarning: the quota file was lost and started again at {self.state_lost_at:%Y-%m-%d %H:%M} UTC: "
               "usage before that cannot be known" if self.state_lost_at else "")
        )


def rest_level(remaining: int | None) -> str:
    """The colour rule of the product: green > 50, orange 20–50, red < 20, exhausted at 0."""
    if remaining is None or remaining > 50:
        return "green"
    if remaining >= 20:
        return "orange"
    return "red" if remaining > 0 else "exhausted"


class QuotaManager:
    """Usage and limits for one plan, persisted in a SQLite file shared across processes."""

    def __init__(self, plan: Plan, path: Path, *, clock=time.time, sleep=time.sleep) -> None:
        self.plan = plan
        self.path = Path(path)
        self._clock = clock
        self._sleep = sleep
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidSettingError(
                f"cannot keep the quota state in {self.path.parent} ({exc}); make the folder writable, free "
                "space, or point MASSIVE_FEEDS_HOME at a writable folder") from None
        with self._guard():
            self._connect()

    def __repr__(self) -> str:
        return f"QuotaManager(plan={self.plan.name!r}, path='{self.path}')"

    # --- storage --------------------------------------------------------------------------------
    @property
    def _known(self) -> Path:
        """The marker that this home has kept a quota file (so a missing one was lost, not never made)."""
        return self.path.with_name(self.path.name + ".known")

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino) if st.st_size else None

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection, reopened when the file was replaced, deleted or emptied meanwhile."""
        db = getattr(self._local, "db", None)
        if db is not None and self._identity() != self._local.identity:
            db.close()
            db = None
        if db is None:
            lost = self._identity() is None and (self._known.exists() or self.path.exists())
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            if lost:
                self._lost(db)
            if not self._known.exists():
                self._known.write_text("this home keeps its quota state in the file beside this one\n")
            self._local.db, self._local.identity = db, self._identity()
        return db

    def _lost(self, db: sqlite3.Connection) -> None:
        now = self._clock()
        db.execute("INSERT INTO state(key, value) VALUES('lost_at', ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                   (now, now))
        log.warning("the quota file %s vanished or was emptied and starts again empty: the REST calls made today "
                    "and the flat-file bytes of this month before %s UTC cannot be known (quota_status() shows "
                    "state_lost_at)", self.path, datetime.fromtimestamp(now, timezone.utc).strftime("%H:%M:%S"))

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite and disk errors as one-line :class:`QuotaStateError` naming the file and what to do."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise self._state_error(exc) from None

    def _state_error(self, exc: BaseException) -> QuotaStateError:
        code = getattr(exc, "sqlite_errorcode", None)
        text = str(exc)
        where = str(self.path)
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
            what = (f"the quota database {where} is damaged ({text}); delete it (and its -wal/-shm files) to start "
                    "counting again: the REST calls made today and this month's flat-file bytes are then unknown")
        elif code == sqlite3.SQLITE_FULL or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            what = (f"cannot write the quota database {where}: the disk is full ({text}); free space in "
                    f"{self.path.parent} or point MASSIVE_FEEDS_HOME at another disk")
        elif code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:  # e.g. a file size limit, a failing disk
            what = (f"cannot write the quota database {where}: the disk refused the write ({text}: full, over a "
                    f"size limit or failing); free space in {self.path.parent} or point MASSIVE_FEEDS_HOME at "
                    "another disk")
        else:
            what = (f"cannot use the quota database {where} ({text}); make its folder writable, free space, or set "
                    "MASSIVE_FEEDS_HOME")
        return QuotaStateError(what, path=where)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise self._state_error(exc) from None
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise self._state_error(exc) from None

    @staticmethod
    def _get(db: sqlite3.Connection, key: str, default: float = 0.0) -> float:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _until(self, db: sqlite3.Connection, key: str, now: float, longest: float) -> float:
        """A stored pause's end, or 0 when it is not a time within ``longest`` seconds from now (an
        ``inf`` or a year-long block written by an older version is ignored, with a warning, not slept on)."""
        until = self._get(db, key)
        if until and not (math.isfinite(until) and until <= now + longest + SKEW_GUARD):
            log.warning("ignoring %s=%r in %s: beyond the longest pause of %gs", key, until, self.path, longest)
            self._set(db, key, 0.0)
            return 0.0
        return until

    @staticmethod
    def _set(db: sqlite3.Connection, key: str, value: float) -> None:
        db.execute("INSERT INTO state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                   (key, value, value))

    # --- REST -----------------------------------------------------------------------------------
    def _window(self) -> float:
        return self.plan.rest_window_seconds + SKEW_GUARD

    def _per_window_limit(self, db: sqlite3.Connection, now: float) -> int | None:
        limit = self.plan.rest_per_minute
        if limit is None:
            return None
        if now < self._until(db, "tightened_until", now, TIGHTEN_WINDOWS * self.plan.rest_window_seconds):
            return max(1, limit // 2)
        return limit

    def acquire_rest(self) -> None:
        """Take one REST call slot: wait for the per-minute window, or raise if the day is used up."""
        while True:
            wait = self._try_acquire()
            if wait <= 0:
                return
            # a long wait is said at the default log level: a silent minute looks like a hang
            log.log(logging.WARNING if wait >= VISIBLE_WAIT else logging.INFO,
                    "REST rate limit (%s/%gs on plan %r): waiting %.1fs", self.plan.rest_per_minute,
                    self.plan.rest_window_seconds, self.plan.name, wait)
            self._sleep(wait)

    def _try_acquire(self) -> float:
        """0 when a slot was taken, else the seconds to wait before trying again."""
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM rest_calls WHERE ts < ?", (now - 2 * 86_400,))
            if self.plan.rest_per_day is not None:
                used = db.execute("SELECT COUNT(*) FROM rest_calls WHERE ts >= ?", (_midnight_utc(now),)).fetchone()[0]
                if used >= self.plan.rest_per_day:
                    resets = _next_midnight_utc(now)
                    raise QuotaExceededError(
                        f"Daily REST quota of {self.plan.rest_per_day} requests is used up (plan {self.plan.name!r}); "
                        f"it resets at {resets:%Y-%m-%d %H:%M} UTC. Use flat files or saved datasets meanwhile.",
                        resource="rest_daily", resets_at=resets,
                    )
            blocked = self._until(db, "blocked_until", now, MAX_SERVER_PAUSE)
            if now < blocked:
                return blocked - now
            limit = self._per_window_limit(db, now)
            if limit is not None:
                since = now - self._window()
                rows = db.execute(
                    "SELECT ts FROM rest_calls WHERE ts >= ? ORDER BY ts LIMIT ?", (since, limit)
                ).fetchall()
                if len(rows) >= limit:
                    return max(rows[0][0] + self._window() - now, 0.01)
            db.execute("INSERT INTO rest_calls(ts) VALUES (?)", (now,))
        return 0.0

    def record_rate_limited(self, retry_after: float | None = None) -> float:
        """The server said 429: block every process until ``retry_after`` (at most :data:`MAX_SERVER_PAUSE`;
        a fair share of the window when absent or not a finite number) and halve the budget for a while.
        Returns the seconds everyone now waits."""
        now = self._clock()
        per = self.plan.rest_per_minute or 60
        wait = self.plan.rest_window_seconds / per
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            wait = min(retry_after, MAX_SERVER_PAUSE)  # the client raises for longer ones; this guards other callers
        with self._transaction() as db:
            self._set(db, "blocked_until", max(self._until(db, "blocked_until", now, MAX_SERVER_PAUSE), now + wait))
            self._set(db, "tightened_until", now + TIGHTEN_WINDOWS * self.plan.rest_window_seconds)
        log.warning("Server rate limit hit (429); pausing REST calls for %.1fs and halving the rate", wait)
        return wait

    # --- flat files -----------------------------------------------------------------------------
    def reserve_flatfile_bytes(self, nbytes: int) -> None:
        """Count ``nbytes`` against this month's flat-file budget, or raise before anything is downloaded."""
        if nbytes <= 0:
            return
        now = self._clock()
        month = _month_key(now)
        with self._transaction() as db:
            row = db.execute("SELECT bytes FROM flatfile_bytes WHERE month = ?", (month,)).fetchone()
            used = row[0] if row else 0
            limit = self.plan.flatfile_bytes_per_month
            if limit is not None and used + nbytes > limit:
                resets = _next_month_utc(now)
                raise QuotaExceededError(
                    f"This download needs {nbytes / 1e6:,.1f} MB but only {max(limit - used, 0) / 1e6:,.1f} MB of "
                    f"the {limit / 1e9:g} GB monthly flat-file quota is left (plan {self.plan.name!r}); "
                    f"it resets on {resets:%Y-%m-%d}. Narrow the query or reuse cached files.",
                    resource="flatfile_bytes", resets_at=resets,
                )
            db.execute(
                "INSERT INTO flatfile_bytes(month, bytes) VALUES(?, ?) "
                "ON CONFLICT(month) DO UPDATE SET bytes = bytes + ?", (month, nbytes, nbytes),
            )

    def release_flatfile_bytes(self, nbytes: int) -> None:
        """Give back a reservation whose download did not happen."""
        if nbytes <= 0:
            return
        with self._transaction() as db:
            db.execute("UPDATE flatfile_bytes SET bytes = MAX(bytes - ?, 0) WHERE month = ?",
                       (nbytes, _month_key(self._clock())))

    # --- reporting ------------------------------------------------------------------------------
    def status(self) -> QuotaStatus:
        now = self._clock()
        with self._guard():
            db = self._connect()
            used_today = db.execute("SELECT COUNT(*) FROM rest_calls WHERE ts >= ?",
                                    (_midnight_utc(now),)).fetchone()[0]
            in_window = db.execute("SELECT COUNT(*) FROM rest_calls WHERE ts >= ?",
                                   (now - self.plan.rest_window_seconds,)).fetchone()[0]
            row = db.execute("SELECT bytes FROM flatfile_bytes WHERE month = ?", (_month_key(now),)).fetchone()
            lost = self._get(db, "lost_at")
        lost_at = datetime.fromtimestamp(lost, timezone.utc) if lost and _month_key(lost) == _month_key(now) else None
        p = self.plan
        return QuotaStatus(
            plan=p.name, rest_used_today=used_today, rest_daily_limit=p.rest_per_day,
            rest_used_this_window=in_window, rest_per_minute=p.rest_per_minute,
            rest_resets_at=_next_midnight_utc(now), flatfile_bytes_used=row[0] if row else 0,
            flatfile_bytes_limit=p.flatfile_bytes_per_month, flatfile_resets_at=_next_month_utc(now),
            ws_max_streams=p.ws_max_streams, ws_messages_per_minute=p.ws_messages_per_minute, state_lost_at=lost_at,
        )

    def reset(self) -> None:
        """Forget all recorded usage (tests, or after a plan change)."""
        with self._transaction() as db:
            db.execute("DELETE FROM rest_calls")
            db.execute("DELETE FROM state")
            db.execute("DELETE FROM flatfile_bytes")


def get_quota(settings: Settings | None = None) -> QuotaManager:
    """The quota manager for these settings (one per plan and state folder in the runtime context).

    Without ``settings``, the runtime's resolved ones: with no key configured, the sandbox's own quota
    (``<home>/sandbox/state``), never a real account's."""
    runtime = current()
    settings = settings or runtime.settings()
    key = (settings.plan, settings.state_dir)
    return runtime.shared("quota", key, lambda: QuotaManager(settings.plan, settings.state_dir / "quota.sqlite3"))


def quota_status(settings: Settings | None = None) -> QuotaStatus:
    """Used and remaining REST calls, flat-file bytes and WebSocket limits, with the colour level."""
    return get_quota(settings).status()


TIPS = (
    "Use Append mode to incrementally build datasets",
    "Save datasets after fetching to avoid re-fetching",
    "Use flat file downloads for bulk historical data",
    "WebSocket is best for live trading (doesn't count against REST quota)",
)


#: What Massive itself documents (see /work/shared/massive-api-facts.md §4): the numbers a profile is
#: compared against. Everything else a profile enforces is this package's own budget, applied locally.
MASSIVE_DOCUMENTED_LIMITS = (
    "Massive documents 5 REST requests/minute for its free Basic plan and unlimited requests on paid plans "
    "(keep under ~100/second); it documents no daily REST cap, no WebSocket message cap and no flat-file "
    "download quota. Basic includes no WebSocket and no flat files."
)


def profile_description(plan_name: str) -> str:
    """Where a plan profile's numbers come from, in one phrase."""
    base = plan_name.split("+", 1)[0]
    if plan_name == "custom" or plan_name.endswith("+custom"):
        return "custom limits from your MASSIVE_PLAN_* settings, enforced locally"
    return {
        "free": "massive_feeds' default profile: a conservative budget enforced locally, not Massive's numbers",
        "basic": "Massive's documented free Basic plan (5 REST requests/minute, no daily cap)",
        "unlimited": "no limits enforced locally (a paid Massive plan)",
    }.get(base, "a profile of this package, enforced locally")


def free_tier_info(settings: Settings | None = None) -> str:
    """The active profile's limits (saying whose numbers they are), Massive's documented limits, and the tips."""
    settings = settings or load_settings()
    plan = settings.plan
    title = f"Limits of profile '{plan.name}' ({profile_description(plan.name)})"
    return (f"=== {title} ===\n{plan.describe()}\n\n=== Massive's documented limits ===\n"
            f"{MASSIVE_DOCUMENTED_LIMITS}\n\nTips:\n" + "\n".join(f"- {t}" for t in TIPS))


def print_free_tier_info(settings: Settings | None = None) -> None:
    """Print the plan's limits and usage tips (the product document's ``print_free_tier_info``)."""
    print(free_tier_info(settings))  # noqa: T201 - printing is this function's purpose
