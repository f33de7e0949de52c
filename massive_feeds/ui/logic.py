"""What the Streamlit pages show, decided without Streamlit: labels, colours, explanations, messages.

Everything here is a pure function (or a small frozen dataclass) so the page rules — the quota colour
rule, the auto-method explanation, the fallback wording, how each error is told to the user — are unit
tested directly; the pages in :mod:`massive_feeds.ui.views` only lay them out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Literal, Mapping

from ..errors import (
    AuthenticationError,
    DatasetError,
    FlatFileError,
    InvalidInputError,
    MassiveError,
    MaxConnectionsError,
    MissingCredentialsError,
    NotEntitledError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamAuthError,
    StreamError,
    StreamLimitError,
)
from ..schema import NEW_YORK as NEW_YORK_ZONE
from ..fetch import AUTO_MAX_DAYS, AUTO_MAX_SYMBOLS, choose_method
from ..quota import MASSIVE_DOCUMENTED_LIMITS, QuotaStatus, profile_description, rest_level

# --- Data Loader: source and methods -------------------------------------------------------------


def _limit(value: int | None, unit: str) -> str:
    return f"unlimited {unit}" if value is None else f"{value:,} {unit}"


def source_label(plan: Any) -> str:
    """The data-source label with the active profile's real name and REST limits, e.g.
    ``Massive.com · profile custom: 40 REST calls/day, 10/minute``."""
    return (f"Massive.com · profile {plan.name}: {_limit(plan.rest_per_day, 'REST calls/day')}, "
            f"{_limit(plan.rest_per_minute, 'per minute')}")


def profile_caption(plan: Any) -> str:
    """Whose numbers the quota panel shows: the profile's origin, then what Massive documents."""
    return (f"Limits of profile **{plan.name}** — {profile_description(plan.name)}. "
            f"{MASSIVE_DOCUMENTED_LIMITS}")

#: Fetch-method radio label → ``fetch_data(method=…)``.
METHOD_LABELS: dict[str, str] = {
    "Auto (Recommended)": "auto",
    "REST API": "rest",
    "Flat Files (S3)": "flat_file",
}
METHOD_NAMES: dict[str, str] = {"rest": "REST API", "flat_file": "Flat Files (S3)", "auto": "Auto"}
METHOD_HELP: dict[str, str] = {
    "auto": "🤖 Automatically picks the best method for the query.",
    "rest": "📡 Fast for small queries; every page of bars is one call against the daily REST quota.",
    "flat_file": "📦 Bulk day files from S3: counts against the monthly download quota, needs S3 credentials.",
}
AUTO_RULE = (
    f"**Auto rule:** REST API for small queries (≤{AUTO_MAX_SYMBOLS} symbols and ≤{AUTO_MAX_DAYS} days), "
    f"Flat Files (S3) for large ones (>{AUTO_MAX_SYMBOLS} symbols or >{AUTO_MAX_DAYS} days). "
    "It falls back to REST when S3 credentials are missing, and to flat files when the REST calls "
    "left today cannot cover the query."
)
INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1M")
DEFAULT_INTERVAL = "1h"
DEFAULT_SYMBOLS = "AAPL, MSFT"

MessageKind = Literal["success", "info", "warning", "error"]


@dataclass(frozen=True)
class UiMessage:
    """One message box: ``kind`` picks ``st.success``/``info``/``warning``/``error``."""

    kind: MessageKind
    title: str
    detail: str = ""
    hint: str = ""

    @property
    def text(self) -> str:
        """Title and detail as one Markdown paragraph (the hint goes in a caption below)."""
        return f"**{self.title}**" + (f" — {self.detail}" if self.detail else "")


def method_plan(method: str, n_symbols: int, days: int, rest_left: int | None = None, rest_calls: int = 0) -> str:
    """What the chosen fetch method will do for this query, said before the fetch runs. ``rest_left``: the REST
    calls left today (``None``: no limit); when they cannot cover ``rest_calls``, Auto takes flat files instead of
    the REST the rule picks, and the plan says so rather than announce REST."""
    if method != "auto":
        return f"{METHOD_NAMES[method]} requested explicitly (no automatic fallback)."
    chosen = choose_method(n_symbols, days)
    size = "small" if chosen == "rest" else "large"
    plan = (f"For this query ({n_symbols} symbol{'s' * (n_symbols != 1)} over {days} day{'s' * (days != 1)}, "
            f"a {size} query) Auto picks **{METHOD_NAMES[chosen]}**")
    if chosen == "rest" and rest_left is not None and rest_left < rest_calls:
        return (f"{plan}, but only {rest_left} REST call(s) are left today for ~{rest_calls}: unless those "
                f"answers are cached, it takes **{METHOD_NAMES['flat_file']}** instead.")
    return plan + "."


def method_used_message(attrs: Mapping[str, Any]) -> UiMessage:
    """Which method actually fetched the bars and why; a fallback is a warning, not a success."""
    used = METHOD_NAMES.get(str(attrs.get("method")), str(attrs.get("method") or "unknown"))
    reason = str(attrs.get("method_reason") or "")
    if reason.startswith("fell back"):
        why = reason.split(":", 1)[1].strip() if ":" in reason else reason
        return UiMessage("warning", f"Fetched via {used} (fallback)", f"Auto fell back to {used} because {why}.")
    if reason == "requested explicitly":
        return UiMessage("success", f"Fetched via {used}", "requested explicitly.")
    return UiMessage("success", f"Fetched via {used}", f"Auto rule: {reason}." if reason else "")


# --- quota ----------------------------------------------------------------------------------------
#: Quota level → Streamlit colour name (used in ``:colour-badge[...]`` Markdown) and icon.
LEVEL_COLOURS: dict[str, str] = {"green": "green", "orange": "orange", "red": "red", "exhausted": "gray"}
LEVEL_ICONS: dict[str, str] = {"green": "✅", "orange": "🔶", "red": "🔴", "exhausted": "🚫"}


@dataclass(frozen=True)
class QuotaBadge:
    """The REST quota line: ``level`` is green/orange/red/exhausted, ``colour`` its display colour."""

    level: str
    colour: str
    icon: str
    label: str

    @property
    def markdown(self) -> str:
        """A coloured Streamlit badge, e.g. ``:orange-badge[🔶 42 of 100 REST calls left today]``."""
        return f":{self.colour}-badge[{self.icon} {self.label}]"


def rest_quota_badge(remaining: int | None, limit: int | None, resets_at: datetime) -> QuotaBadge:
    """The product's colour rule: green > 50, orange 20–50, red < 20, grey when the day is used up."""
    level = rest_level(remaining)
    if remaining is None:
        label = "Unlimited REST calls on this plan"
    elif level == "exhausted":
        label = (f"Daily limit reached: 0 of {limit} REST calls left; resets at midnight UTC "
                 f"({resets_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC)")
    else:
        label = f"{remaining} of {limit} REST calls left today"
    return QuotaBadge(level, LEVEL_COLOURS[level], LEVEL_ICONS[level], label)


def quota_badge(status: QuotaStatus) -> QuotaBadge:
    """:func:`rest_quota_badge` for a :class:`~massive_feeds.quota.QuotaStatus`."""
    return rest_quota_badge(status.rest_remaining_today, status.rest_daily_limit, status.rest_resets_at)


def format_bytes(n: int | float | None) -> str:
    """``10.00 GB``, ``512.0 MB``, ``12.3 kB``; ``unlimited`` for ``None`` (decimal units, as the plans)."""
    if n is None:
        return "unlimited"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}" if unit == "GB" else f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def flatfile_quota_label(status: QuotaStatus) -> str:
    """Flat-file bytes left this month, e.g. ``9.87 GB of 10.00 GB left this month (resets 2026-12-01)``."""
    if status.flatfile_bytes_limit is None:
        return "Unlimited flat-file downloads on this plan"
    return (f"{format_bytes(status.flatfile_bytes_remaining)} of {format_bytes(status.flatfile_bytes_limit)} "
            f"flat-file downloads left this month (resets {status.flatfile_resets_at:%Y-%m-%d})")


def rest_minute_label(status: QuotaStatus) -> str:
    """REST calls used in the current minute window against the per-minute limit."""
    if status.rest_per_minute is None:
        return f"{status.rest_used_this_window} REST calls this minute (no per-minute limit)"
    return f"{status.rest_used_this_window} of {status.rest_per_minute} REST calls used this minute"


# --- errors ---------------------------------------------------------------------------------------
def error_message(exc: BaseException, action: str = "") -> UiMessage:
    """How an exception is told in the page: a title saying what happened, the library's own message
    (which never contains a key), and what to do. Never a traceback."""
    prefix = f"{action} failed: " if action else ""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, MissingCredentialsError):
        if "S3" in exc.message:
            return UiMessage("error", "No S3 credentials for flat files", detail,
                             "Use the REST API or Auto method, or add your S3 keys (they differ from the API key).")
        return UiMessage("error", "No API key configured", detail,
                         "Set MASSIVE_API_KEY (environment or ./api_keys.properties); or start the app without "
                         "MASSIVE_UI_SANDBOX=off to try it on the local sandbox.")
    if isinstance(exc, QuotaExceededError):
        when = f" It resets at {exc.resets_at:%Y-%m-%d %H:%M} UTC." if exc.resets_at else ""
        what = "Daily REST quota exhausted" if exc.resource == "rest_daily" else "Monthly flat-file quota exhausted"
        return UiMessage("error", what, exc.message, f"Use saved datasets or another method meanwhile.{when}")
    if isinstance(exc, InvalidInputError):
        return UiMessage("error", f"{prefix}invalid input", detail)
    if isinstance(exc, (AuthenticationError, StreamAuthError)):
        return UiMessage("error", "The API key was refused", detail, "Check MASSIVE_API_KEY (it is never shown here).")
    if isinstance(exc, NotEntitledError):
        return UiMessage("error", "Not included in your plan", detail)
    if isinstance(exc, RateLimitError):
        return UiMessage("error", "Rate limited by Massive", detail, "Wait a minute and try again.")
    if isinstance(exc, StreamLimitError):
        return UiMessage("error", "Too many symbols for your plan", detail, "Stop some streams first.")
    if isinstance(exc, MaxConnectionsError):
        return UiMessage("error", "Another client holds the stream connection", detail,
                         "Massive allows one connection per market and key: close the other client.")
    if isinstance(exc, StreamError):
        return UiMessage("error", f"{prefix}streaming problem", detail)
    if isinstance(exc, FlatFileError):
        return UiMessage("error", f"{prefix}flat-file problem", detail)
    if isinstance(exc, DatasetError):
        return UiMessage("error", f"{prefix}dataset problem", detail)
    if isinstance(exc, ServerError):
        return UiMessage("error", "Massive is not answering", detail, "Try again in a moment.")
    if isinstance(exc, MassiveError):
        return UiMessage("error", f"{prefix}{type(exc).__name__}", detail)
    return UiMessage("error", f"{prefix}unexpected error", f"{type(exc).__name__}: {detail}",
                     "The details are in the server log.")


# --- dates and inputs -----------------------------------------------------------------------------
def default_date_range(today: date, days: int = 5) -> tuple[date, date]:
    """A small default window that Auto serves over REST: ``days`` calendar days ending yesterday."""
    end = today - timedelta(days=1)
    return end - timedelta(days=days - 1), end


def suggest_dataset_name(symbols: Iterable[str], interval: str) -> str:
    """A valid dataset name from the query, e.g. ``aapl_msft_1h``."""
    parts = [re.sub(r"[^a-z0-9]+", "", s.lower().split(":")[-1]) for s in symbols][:4]
    base = "_".join(p for p in parts if p) or "bars"
    return f"{base}_{interval.lower() if interval != '1M' else '1mo'}"


def recording_dataset_name(base: str, existing: Iterable[str], now: datetime | None = None) -> str:
    """``base`` (``massive_live_<tag>_<YYYYMMDD>``), or ``base_HHMMSS`` when that dataset already exists,
    so a second recording of the day never overwrites the first."""
    taken = set(existing)
    if base not in taken:
        return base
    stamp = (now or datetime.now(timezone.utc)).strftime("%H%M%S")
    name, n = f"{base}_{stamp}", 2
    while name in taken:
        name, n = f"{base}_{stamp}_{n}", n + 1
    return name


# --- live trading ---------------------------------------------------------------------------------
def _of(value: Any, limit: Any) -> str:
    return f"{value} / {'∞' if limit is None else limit}"


def stream_stat_cards(stats: Mapping[str, Any]) -> dict[str, str]:
    """The four dashboard figures: active streams of the maximum, messages this minute of the
    maximum, reconnects and dropped events."""
    return {
        "Active streams": _of(stats.get("active_streams", 0), stats.get("max_streams")),
        "Messages this minute": _of(stats.get("messages_this_minute", 0), stats.get("max_messages_per_minute")),
        "Reconnects": str(stats.get("reconnects", 0)),
        "Dropped": str(stats.get("dropped", 0)),
    }


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "size":
        return f"{value:,.0f}"
    return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"


def in_new_york(df: Any, columns: Iterable[str] = ("timestamp",)) -> Any:
    """A copy of ``df`` for display with its tz-aware ``columns`` in New York time (the zone of the page's charts:
    one zone per view)."""
    out = df.copy()
    for col in columns:
        if col in out and getattr(out[col].dtype, "tz", None) is not None:
            out[col] = out[col].dt.tz_convert(NEW_YORK_ZONE)
    return out


def new_york_span(ts: Any) -> str:
    """``first → last`` of tz-aware ``ts`` in New York time, labelled."""
    idx = ts.dt.tz_convert(NEW_YORK_ZONE)
    return f"{idx.min():%Y-%m-%d %H:%M} → {idx.max():%Y-%m-%d %H:%M} New York time"


def format_quotes(quotes: Any) -> Any:
    """The live quotes table for display: prices to 2 decimals (4 under 10), sizes whole, gaps as ``–``."""
    out = quotes.copy().astype(object)
    for col in out.columns:
        kind = "size" if col.endswith("size") or col == "Updates" else "price"
        if col in ("Symbol", "Market time (New York)"):
            continue
        out[col] = [_fmt(v, kind) for v in quotes[col]]
    return out.set_index("Symbol")


def default_stream_symbols(available: Iterable[str], n: int = 2) -> list[str]:
    """A sensible preselection: AAPL and BTC when offered (a stock and a 24/7 market), else the first ``n``."""
    avail = list(available)
    preferred: list[str] = [s for s in ("AAPL", "X:BTCUSD") if s in avail]
    return preferred or avail[:n]


# --- backtests ------------------------------------------------------------------------------------
def strategy_params(strategy_cls: type) -> dict[str, int | float]:
    """The numeric parameters of a Backtrader strategy class with their defaults (editable in the page)."""
    params = getattr(strategy_cls, "params", None)
    pairs = params._getitems() if params is not None and hasattr(params, "_getitems") else ()
    return {k: v for k, v in pairs if isinstance(v, (int, float)) and not isinstance(v, bool)}


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 05 min``, ``2.5 d``."""
    s = max(float(seconds), 0.0)
    if s < 90:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86_400:
        h, m = divmod(int(round(s / 60)), 60)
        return f"{h} h {m:02d} min"
    return f"{s / 86_400:.1f} d"


def strategy_readiness(needs: Mapping[str, int], bar: str, bars_so_far: int | None = None,
                       speed: float = 1.0) -> list[dict[str, str]]:
    """How long each strategy must record before it can run: its bars needed, that much market time at
    bar size ``bar``, the wall-clock time at the sandbox clock ``speed`` (1 = real time), and — while
    recording — whether the bars so far (per symbol) are enough."""
    width = pd_timedelta_seconds(bar)
    rows = []
    for name, need in needs.items():
        market = need * width
        row = {"Strategy": name, "Bars needed": f"{need:,}", "Market time": format_duration(market)}
        row["Wall time" + (f" at {speed:g}×" if speed != 1 else "")] = format_duration(market / speed)
        if bars_so_far is not None:
            left = need - bars_so_far
            row["Status"] = "✅ enough bars" if left <= 0 else (
                f"⏳ {left:,} more bars (~{format_duration(left * width / speed)})")
        rows.append(row)
    return rows


def pd_timedelta_seconds(bar: str) -> float:
    """Seconds in a bar size such as ``1s``, ``5s``, ``1min``."""
    import pandas as pd

    return float(pd.Timedelta(bar).total_seconds())


def symbol_list_message(source: str, problem: BaseException | None, fetched_at: str | None = None) -> UiMessage | None:
    """The one message about the symbol list: none when it was just fetched; otherwise where it comes
    from, why, and that any symbol can be typed (streaming does not use REST)."""
    if source == "live":
        return None
    if isinstance(problem, QuotaExceededError) and problem.resource == "rest_daily":
        why = "the daily REST quota is used up"
    elif isinstance(problem, MissingCredentialsError):
        why = "no API key is configured"
    else:
        why = f"the symbol list could not be fetched ({problem})" if problem else "the symbol list is unavailable"
    where = (f"the list cached at {fetched_at}" if source == "cache" and fetched_at else
             "the cached list" if source == "cache" else "a short built-in list")
    return UiMessage("info", "Symbols from " + ("cache" if source == "cache" else "a built-in list"),
                     f"{why}, so the page offers {where}. Streaming does not use REST: type any symbol into the "
                     "box (e.g. AAPL, X:BTCUSD, C:EURUSD) and press Enter.")


def min_bars_needed(params: Mapping[str, Any]) -> int:
    """Bars a strategy needs before it can act: its longest integer lookback plus one."""
    periods = [int(v) for v in params.values() if isinstance(v, int) and not isinstance(v, bool)]
    return max(periods + [1]) + 1


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2%}"


def backtest_cards(result: Any) -> dict[str, str]:
    """Return, Sharpe, max drawdown and trades of a :class:`strategies.BacktestResult`, formatted
    (Sharpe ``n/a`` when not meaningful; :func:`sharpe_caption` says why)."""
    sharpe = result.sharpe
    return {
        "Return": _pct(result.total_return),
        "Sharpe": "n/a" if sharpe is None or math.isnan(sharpe) else f"{sharpe:.2f}",
        "Max drawdown": "n/a" if math.isnan(result.max_drawdown) else f"{result.max_drawdown:.2%}",
        "Trades": str(result.trade_count),
        # a position still held at the end is not a closed trade, but it is there (its value is in the return)
        "Open": f"{getattr(result, 'open_trades', 0)} open",
    }


def sharpe_caption(result: Any) -> str | None:
    """Why the Sharpe card says n/a (the sample is too small to annualise meaningfully), else ``None``."""
    note = getattr(result, "sharpe_note", None)
    if not note:
        return None
    return (f"Sharpe n/a: {note}. It is annualised from the bar size and the asset's session, and only "
            "reported from 30 bar returns covering at least one full session.")
