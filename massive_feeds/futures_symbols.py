"""Futures tickers: single contracts (``ESZ4``, ``ESZ24``, ``GCJ5``, ``F:ESZ4``) and continuous series
(``ES.c.0``, ``ES.c.1``, ``ES.v.0``, Databento's notation).

The rule that tells a contract code from a stock ticker (documented in the README's futures section):

* A **contract code** is a product root of 1-4 letters/digits (containing a letter: ``ES``, ``GC``, ``6E``,
  ``M2K``, ``00C``), one CME month code (``F G H J K M N Q U V X Z``) and a **one- or two-digit year**.
  It must end in a digit. US-listed stock tickers never contain digits (share classes are written with a
  dot, ``BRK.B``; preferreds and warrants use letters), so ``AAPL``, ``F``, ``GE``, ``ESZ`` or ``GCJ`` stay
  stocks and ``ESZ4`` is a future. ``F:ESZ4`` names a contract explicitly.
* A **continuous series** is ``ROOT.RULE.RANK``: rule ``c`` (calendar roll: the contract nearest expiry
  still trading, rolled on its last trade date) or ``v`` (volume roll: the contract with the most volume
  the session before), rank ``0`` (front), ``1`` (second) … at most 9.

Continuous series keep their notation as the normalised ticker (``ES.c.0``: root upper case, rule lower
case); contracts are normalised to Massive's code without the ``F:`` prefix (``ESZ4``), which is the form the
REST paths, the WebSocket channels and the flat-file rows use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .errors import InvalidInputError

CHICAGO = ZoneInfo("America/Chicago")

MONTH_CODES = "FGHJKMNQUVXZ"
#: month code -> calendar month
MONTH_OF = {code: i + 1 for i, code in enumerate(MONTH_CODES)}
FUTURES_FORMS = ("a contract code like ESZ4, ESZ24, GCJ5 or F:ESZ4, or a continuous series like ES.c.0 "
                 "(front, calendar roll), ES.c.1 (second) or ES.v.0 (front, volume roll)")

# the month is the letter just before the trailing year digits, so the split is unambiguous
_CONTRACT_RE = re.compile(rf"^([A-Z0-9]{{1,4}})([{MONTH_CODES}])(\d{{1,2}})$")
_CONTINUOUS_RE = re.compile(r"^([A-Za-z0-9]{1,4})\.([A-Za-z])\.(\S+)$")
_ROOT_RE = re.compile(r"^(?=.*[A-Z])[A-Z0-9]{1,4}$")


@dataclass(frozen=True)
class FuturesContract:
    """One contract: ``root`` (product code), ``month`` (1-12), ``year_digits`` as written (``"4"`` or ``"24"``)."""

    ticker: str
    root: str
    month: int
    year_digits: str

    def year(self, near: int) -> int:
        """The calendar year of the expiry, the one written digits allow that is nearest after ``near - 3``
        (a one-digit ``4`` near 2024 is 2024, near 2031 is 2034; codes name contracts listed a few years ahead)."""
        mod = 10 ** len(self.year_digits)
        base = near - 3
        return base + (int(self.year_digits) - base) % mod


@dataclass(frozen=True)
class ContinuousFutures:
    """A continuous series: ``root``, ``rule`` (``"c"`` calendar, ``"v"`` volume) and ``rank`` (0 = front)."""

    ticker: str
    root: str
    rule: Literal["c", "v"]
    rank: int


def parse_contract(text: str) -> FuturesContract | None:
    """A contract code (already upper case, ``F:`` stripped) as :class:`FuturesContract`, or None."""
    m = _CONTRACT_RE.match(text)
    if not m:
        return None
    root, month, year = m.groups()
    if not _ROOT_RE.match(root):
        return None
    return FuturesContract(text, root, MONTH_OF[month], year)


def contract_spellings(ticker: str) -> list[str]:
    """Every way a day file may write a contract, ``ticker`` first: Massive writes both ``ESZ4`` and ``ESZ24``
    for one contract. A two-digit year has its one-digit form; a one-digit year the two-digit forms of the
    decades futures history spans (2010s to 2030s; the one a file holds is the one near its date). Any other
    ticker is its own only spelling."""
    contract = parse_contract(ticker)
    if contract is None:
        return [ticker]
    stem = ticker[: len(ticker) - len(contract.year_digits)]
    if len(contract.year_digits) == 2:
        return [ticker, stem + contract.year_digits[1]]
    return [ticker, *(f"{stem}{decade}{contract.year_digits}" for decade in (1, 2, 3))]


def parse_continuous(text: str) -> ContinuousFutures | None:
    """``ES.c.0`` as :class:`ContinuousFutures`; None when ``text`` is not of the ``ROOT.x.N`` shape at all.

    Raises :class:`InvalidInputError` for that shape with a bad rule or rank (``ES.x.0``, ``ES.c.a``)."""
    m = _CONTINUOUS_RE.match(text.strip())
    if not m:
        return None
    root, rule, rank = m.group(1).upper(), m.group(2).lower(), m.group(3)
    if rule not in ("c", "v") or not rank.isdigit() or len(rank) > 1 or not _ROOT_RE.match(root):
        raise InvalidInputError(f"Invalid futures symbol {text!r}; use {FUTURES_FORMS}")
    return ContinuousFutures(f"{root}.{rule}.{rank}", root, rule, int(rank))  # type: ignore[arg-type]


def normalize_futures(symbol: str) -> str | None:
    """The normalised ticker when ``symbol`` is a futures form, None when it is not one (a stock, a pair …).

    Raises :class:`InvalidInputError` for an explicit but bad futures form (``F:XYZ``, ``ES.x.0``, ``/ES``,
    ``ES=F``), naming the valid forms."""
    text = symbol.strip()
    if (cont := parse_continuous(text)) is not None:
        return cont.ticker
    upper = text.upper()
    if upper.startswith("F:"):
        if parse_contract(upper[2:]) is None:
            raise InvalidInputError(f"Invalid futures symbol {symbol!r}; use {FUTURES_FORMS}")
        return upper[2:]
    if upper.startswith("/") or upper.endswith("=F"):  # other vendors' futures notations
        raise InvalidInputError(f"Invalid symbol {symbol!r}: futures are written as {FUTURES_FORMS}")
    return upper if parse_contract(upper) is not None else None


def is_futures(ticker: str) -> bool:
    """Whether a normalised ticker is a futures contract or a continuous series."""
    if "." in ticker and ticker.count(".") == 2:
        try:
            return parse_continuous(ticker) is not None
        except InvalidInputError:
            return False
    return parse_contract(ticker) is not None


def is_continuous(ticker: str) -> bool:
    """Whether a normalised ticker is a continuous series (``ES.c.0``)."""
    return is_futures(ticker) and ticker.count(".") == 2


def futures_root(ticker: str) -> str:
    """The product code of a normalised futures ticker (``ESZ4`` → ``ES``, ``ES.c.0`` → ``ES``)."""
    cont = parse_continuous(ticker) if ticker.count(".") == 2 else None
    if cont is not None:
        return cont.root
    contract = parse_contract(ticker)
    if contract is None:
        raise InvalidInputError(f"{ticker!r} is not a futures ticker; use {FUTURES_FORMS}")
    return contract.root


ROLL_ADJUSTS: tuple[str, ...] = ("none", "ratio", "difference")


def validate_roll_adjust(value: str) -> str:
    """``none``/``ratio``/``difference`` (how a continuous series adjusts its rolls) or an
    :class:`InvalidInputError` naming them."""
    if value not in ROLL_ADJUSTS:
        raise InvalidInputError(f"Invalid roll_adjust {value!r}; use 'none' (default), 'ratio' or 'difference'")
    return value


# --- the roll table of a continuous series ---------------------------------------------------------
#: the roll table's columns (a ``symbol`` column leads them when a frame holds several continuous series)
ROLL_COLUMNS = ("date", "from", "to", "from_price", "to_price", "factor", "offset")
_ROLL_PRICES = ("from_price", "to_price", "factor", "offset")
#: The bar columns a back-adjustment (``roll_adjust`` ratio/difference) moves.
ADJUSTED_PRICES = ("open", "high", "low", "close", "vwap", "settlement_price")


def back_adjust(bars: pd.DataFrame, days: np.ndarray, rolls: pd.DataFrame, how: str,
                rows: np.ndarray | None = None) -> None:
    """Back-adjust ``bars`` in place for ``rolls`` (a roll table in date order, its prices known): each bar (its
    session in ``days``, ``datetime64[D]``) is multiplied by the factors (``how="ratio"``) or shifted by the
    offsets (``"difference"``) of every roll after its session, so the newest contract keeps its own prices.
    ``rows`` (a boolean mask, ``days`` of those rows only) limits it to some bars, e.g. one series of several."""
    after = np.searchsorted(np.asarray(rolls["date"], dtype="datetime64[D]"), days, side="right")
    if how == "ratio":
        step = np.r_[np.cumprod(rolls["factor"].to_numpy(dtype="float64")[::-1])[::-1], 1.0][after]
    else:
        step = np.r_[np.cumsum(rolls["offset"].to_numpy(dtype="float64")[::-1])[::-1], 0.0][after]
    picked = slice(None) if rows is None else rows
    for column in (c for c in ADJUSTED_PRICES if c in bars):
        values = bars[column].to_numpy(dtype="float64", copy=True)
        values[picked] = values[picked] * step if how == "ratio" else values[picked] + step
        bars[column] = values


def roll_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A roll table as ``df.attrs["rolls"]`` holds it: one plain dict per roll (``symbol`` first when there,
    ``date`` an ISO day string, the prices floats or ``None`` where unknown). pandas writes ``attrs`` as JSON
    (``to_parquet``) and compares them with ``==`` (``concat``, ``merge``), which a DataFrame there breaks."""
    columns: dict[str, list[Any]] = {c: [str(v) for v in table[c]] for c in ("symbol", "from", "to") if c in table}
    columns["date"] = [str(d) for d in np.asarray(table["date"], dtype="datetime64[D]")]
    for c in _ROLL_PRICES:
        values = table[c].to_numpy(dtype="float64")
        columns[c] = [float(v) if np.isfinite(v) else None for v in values]  # NaN is never equal to itself: None
    order = [c for c in ("symbol", *ROLL_COLUMNS) if c in columns]
    return [dict(zip(order, row)) for row in zip(*(columns[c] for c in order))]


def roll_table(df: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """The roll table of a continuous futures series as a DataFrame: ``fetch_data("ES.c.0", ...)`` (or a
    dataset of it) keeps it in ``df.attrs["rolls"]`` as plain records, so the frame still goes through
    ``to_parquet``, ``pd.concat`` and ``merge``; this is the one way to read it as a table.

    Args:
        df: the bars (their ``attrs["rolls"]`` is read), or that list of records itself.

    Returns:
        One row per roll, in date order: ``date`` (the first session held on the new contract, a Timestamp),
        ``from``/``to`` (the contracts), ``from_price``/``to_price`` (both contracts' last closes in the session
        before the roll; NaN where a contract had no bar), ``factor`` (``to_price / from_price``, what
        ``roll_adjust="ratio"`` multiplies earlier bars by) and ``offset`` (``to_price - from_price``, what
        ``"difference"`` adds). A frame of several continuous series has a leading ``symbol`` column. A series
        without a roll in its window gives an empty table with these columns.

    Raises:
        InvalidInputError: ``df`` has no roll table (not a continuous series such as ``ES.c.0``, or its attrs
            were dropped: pandas keeps ``attrs`` only where all frames combined had equal ones).
    """
    if isinstance(df, pd.DataFrame):
        if "rolls" in df.attrs:
            rolls = df.attrs["rolls"]
        elif set(ROLL_COLUMNS) <= set(df.columns):  # already a table
            rolls = df
        else:
            raise InvalidInputError("this frame has no roll table (df.attrs['rolls']): only a continuous futures "
                                    "series such as ES.c.0 has one, and pandas drops attrs when frames with "
                                    "different attrs are combined")
    else:
        rolls = df
    table = rolls.copy() if isinstance(rolls, pd.DataFrame) else pd.DataFrame.from_records(list(rolls))
    cols = [*(["symbol"] if "symbol" in table.columns else []), *ROLL_COLUMNS]
    table = table.reindex(columns=cols)
    table["date"] = pd.to_datetime(table["date"]).astype("datetime64[ns]")
    kinds = {**{c: "str" for c in ("symbol", "from", "to") if c in table.columns}, **dict.fromkeys(_ROLL_PRICES, "float64")}
    return table.astype(kinds).reset_index(drop=True)


# --- sessions ---------------------------------------------------------------------------------------
def session_open(day: date) -> pd.Timestamp:
    """The first minute (UTC) of the CME session settling on ``day``: 17:00 Chicago the day before."""
    return pd.Timestamp(datetime.combine(day - timedelta(days=1), time(17), CHICAGO)).tz_convert("UTC")


def session_day(ts: pd.Timestamp) -> date:
    """The session (``session_end_date``) an instant belongs to: :func:`session_days` for one timestamp."""
    return (pd.Timestamp(ts).tz_convert(CHICAGO).tz_localize(None) + pd.Timedelta(hours=7)).date()


def session_days(ts: pd.Series) -> np.ndarray:
    """The session (``session_end_date``) of each bar start, as ``datetime64[D]``: Chicago time + 7 hours
    moves a 17:00 open onto the next calendar day, the day the session settles (vectorised)."""
    local = ts.dt.tz_convert(CHICAGO).dt.tz_localize(None) + pd.Timedelta(hours=7)
    return local.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
