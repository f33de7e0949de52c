"""The Auto rule end to end over the sandbox (REST + S3), with its conditions really produced:

* boundaries: at most 5 symbols and at most 7 calendar days go over REST, 6 symbols or 8 days over flat
  files — checked by the method, the requests the sandbox saw, and the bars' values;
* fallback to REST when there are no S3 credentials;
* fallback to flat files when the REST quota is really used up (a custom plan with a tiny daily limit and
  real calls): the splits list then comes from the cache without a call, and says its age;
* an explicit REST query that the quota left cannot cover is refused before any call, and a rerun resumes
  from the symbols already cached;
* empty and partial results: per-symbol reasons, NoDataError, missing flat-file trading days filled over
  REST in Auto mode; the CLI's one line and exit code, nothing saved.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds.cli import main
from massive_feeds.config import Plan, Settings, load_settings
from massive_feeds.errors import NoDataError, QuotaExceededError
from massive_feeds.fetch import fetch_data, fetch_ohlcv_rest
from massive_feeds.flatfiles import download_flat_file
from massive_feeds.quota import quota_status
from massive_feeds.sandbox import Sandbox
from massive_feeds.splits import fetch_splits

FIRST, LAST = date(2024, 1, 25), date(2024, 3, 8)  # the sandbox's flat files
SIX = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "NFLX"]
VALUES = ["open", "high", "low", "close", "volume"]
UNKNOWN = "unknown symbol (no active ticker by that name)"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(FIRST, LAST)) as sandbox:
        yield sandbox


def settings_for(sb: Sandbox, home: Path, plan: str | Plan = "unlimited", s3: bool = True) -> Settings:
    env = sb.env()
    if not s3:
        env = {k: v for k, v in env.items() if not k.startswith("MASSIVE_S3_")}
    return load_settings(environ=env, home=home, datasets_dir=home / "datasets", plan=plan)


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return settings_for(sb, tmp_path / "home")


def tiny(per_day: int) -> Plan:
    return Plan("tiny", None, per_day, None, None, None)


def aggs(sb: Sandbox) -> int:
    return sb.rest.count("/v2/aggs")


def s3_gets(sb: Sandbox) -> int:
    return sb.s3.count() if hasattr(sb.s3, "count") else 0


def same_values(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = a.sort_values(["symbol", "timestamp"]), b.sort_values(["symbol", "timestamp"])
    assert a["timestamp"].tolist() == b["timestamp"].tolist() and a["symbol"].tolist() == b["symbol"].tolist()
    np.testing.assert_allclose(a[VALUES].to_numpy(float), b[VALUES].to_numpy(float), rtol=1e-9)


# --- the boundaries -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n_symbols", "end", "method"), [
    (5, "2024-02-11", "rest"),       # 5 symbols, 7 days (Mon..Sun)
    (6, "2024-02-11", "flat_file"),  # 6 symbols
    (5, "2024-02-12", "flat_file"),  # 8 days
    (1, "2024-02-05", "rest"),
])
def test_auto_boundaries_choose_the_method_and_give_the_same_bars(sb: Sandbox, settings: Settings, n_symbols: int,
                                                                   end: str, method: str) -> None:
    symbols = SIX[:n_symbols]
    before = aggs(sb)
    df = fetch_data(symbols, "2024-02-05", end, "1h", settings=settings)
    assert df.attrs["method"] == method
    assert df.attrs["method_reason"].startswith(f"{n_symbols} symbol(s) over ")
    assert aggs(sb) - before == (n_symbols if method == "rest" else 0)  # flat files call /v2/aggs never
    other = (download_flat_file if method == "rest" else fetch_ohlcv_rest)(symbols, "2024-02-05", end, "1h",
                                                                            settings=settings)
    same_values(df, other)
    days = sorted(set(df["timestamp"].dt.tz_convert("America/New_York").dt.date))
    sessions = [date(2024, 2, d) for d in (5, 6, 7, 8, 9, 12)]
    assert days == [d for d in sessions if d <= date.fromisoformat(end)]
    assert set(df["symbol"]) == set(symbols)


# --- fallback to REST: no S3 credentials -----------------------------------------------------------------
def test_no_s3_credentials_fall_back_to_rest_with_the_same_bars(sb: Sandbox, tmp_path: Path) -> None:
    no_s3 = settings_for(sb, tmp_path / "a", s3=False)
    before = aggs(sb)
    df = fetch_data(SIX, "2024-02-05", "2024-02-16", "1d", settings=no_s3)
    assert df.attrs["method"] == "rest" and "no S3 credentials" in df.attrs["method_reason"]
    assert aggs(sb) - before == 6
    flat = download_flat_file(SIX, "2024-02-05", "2024-02-16", "1d", settings=settings_for(sb, tmp_path / "b"))
    same_values(df, flat)
    assert len(df) == 6 * 10  # two full weeks of sessions


# --- fallback to flat files: the REST quota really used up -------------------------------------------------
def use_up(settings: Settings, calls: int) -> None:
    """Spend ``calls`` real REST calls (distinct days, so nothing comes from the cache)."""
    for i in range(calls):
        day = f"2024-01-{10 + i:02d}"
        fetch_ohlcv_rest("KO", day, day, "1d", settings=settings)


def test_exhausted_quota_falls_back_to_flat_files_with_cached_splits(sb: Sandbox, tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = tiny(3)
    s = settings_for(sb, home, plan)
    fetch_splits("GOOGL", settings=s)  # an earlier day's list in the cache (1 call) ...
    use_up(s, 2)  # ... and the rest of the day's quota spent for real
    assert quota_status(s).rest_remaining_today == 0
    before_aggs, before_splits = aggs(sb), sb.rest.count("/stocks/v1/splits")
    df = fetch_data("GOOGL", "2024-03-04", "2024-03-08", "1h", settings=s)  # small: REST by the rule
    assert df.attrs["method"] == "flat_file"
    assert "fell back to flat files: the REST quota left today (0 calls) cannot cover ~1 calls" == \
        df.attrs["method_reason"]
    assert aggs(sb) == before_aggs and sb.rest.count("/stocks/v1/splits") == before_splits  # no call at all
    assert quota_status(s).rest_used_today == 3
    assert df.attrs["splits"] == 1 and df.attrs["splits_age_hours"] < 1
    assert pd.Timestamp(df.attrs["splits_as_of"]) <= pd.Timestamp.now("UTC")
    reference = fetch_ohlcv_rest("GOOGL", "2024-03-04", "2024-03-08", "1h", settings=settings_for(sb, tmp_path / "r"))
    same_values(df, reference)  # adjusted across GOOGL's 4-for-1 of 2024-03-06, as REST adjusts it


def test_exhausted_quota_uses_the_market_wide_splits_table(sb: Sandbox, tmp_path: Path) -> None:
    s = settings_for(sb, tmp_path / "home", tiny(4))
    # an earlier large query cached one market-wide list for every ticker (1 call for 6 tickers)
    download_flat_file(SIX, "2024-02-26", "2024-03-01", "1d", settings=s)
    assert sb.rest.count("/stocks/v1/splits") and quota_status(s).rest_used_today == 1
    use_up(s, 3)
    before = sb.rest.count("/stocks/v1/splits")
    df = fetch_data("GOOGL", "2024-03-04", "2024-03-08", "1d", settings=s)  # GOOGL was not among the six
    assert df.attrs["method"] == "flat_file" and sb.rest.count("/stocks/v1/splits") == before
    reference = fetch_ohlcv_rest("GOOGL", "2024-03-04", "2024-03-08", "1d", settings=settings_for(sb, tmp_path / "r"))
    same_values(df, reference)


def test_exhausted_quota_without_any_cached_splits_fails_clearly_and_spends_nothing(sb: Sandbox,
                                                                                     tmp_path: Path) -> None:
    s = settings_for(sb, tmp_path / "home", tiny(2))
    use_up(s, 2)
    before = sb.rest.count("/")
    with pytest.raises(QuotaExceededError, match="no cached splits list covers GOOGL") as err:
        fetch_data("GOOGL", "2024-03-04", "2024-03-08", "1h", settings=s)
    # the failure names what Auto ran and why (flat files, after the quota fallback), not only the splits list
    assert str(err.value).startswith("Auto read flat files (fell back to flat files: the REST quota left today "
                                     "(0 calls) cannot cover ~1 calls), which failed: the splits list needs 1 REST")
    assert err.value.context["method"] == "flat_file"
    assert "resets at" in str(err.value) and err.value.resets_at is not None
    assert sb.rest.count("/") == before
    raw = fetch_data("GOOGL", "2024-03-04", "2024-03-08", "1h", settings=s, adjusted=False)  # needs no splits
    assert raw.attrs["method"] == "flat_file" and len(raw) > 0


# --- an explicit REST query refuses up front and resumes ---------------------------------------------------
def test_explicit_rest_refuses_before_any_call_and_a_rerun_resumes(sb: Sandbox, tmp_path: Path) -> None:
    s = settings_for(sb, tmp_path / "home", tiny(3))
    before = aggs(sb)
    fetch_data("AAPL", "2024-02-05", "2024-02-09", "1h", method="rest", settings=s)  # cached, 1 call
    with pytest.raises(QuotaExceededError) as err:
        fetch_data(["AAPL", "MSFT", "NVDA", "AMZN"], "2024-02-05", "2024-02-09", "1h", method="rest", settings=s)
    assert "needs ~3 REST call(s) and 2 of 3 are left today" in str(err.value)
    assert (err.value.needed, err.value.remaining) == (3, 2)
    assert err.value.resets_at == quota_status(s).rest_resets_at
    assert aggs(sb) - before == 1 and quota_status(s).rest_used_today == 1  # nothing spent on the refused query
    df = fetch_data(["AAPL", "MSFT", "NVDA"], "2024-02-05", "2024-02-09", "1h", method="rest", settings=s)
    assert aggs(sb) - before == 3 and set(df["symbol"]) == {"AAPL", "MSFT", "NVDA"}  # AAPL from the cache


# --- empty and partial results -----------------------------------------------------------------------------
def test_partial_result_names_the_empty_symbol_range_and_reason(settings: Settings,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="massive_feeds.fetch"):
        df = fetch_data(["AAPL", "ZZZZ"], "2024-02-05", "2024-02-06", "1h", settings=settings)
    assert df.attrs["empty_symbols"] == ["ZZZZ"] and set(df["symbol"]) == {"AAPL"}
    assert df.attrs["empty_reasons"] == {"ZZZZ": f"no bars over REST: {UNKNOWN}"}
    assert f"no bars for ZZZZ in 2024-02-05..2024-02-06 via rest: no bars over REST: {UNKNOWN}" in caplog.text


@pytest.mark.parametrize(("symbols", "start", "end", "method", "reason"), [
    (["ZZZZ"], "2024-02-05", "2024-02-06", "rest", f"no bars over REST: {UNKNOWN}"),
    (["ZZZZ"], "2024-02-05", "2024-02-06", "flat_file", f"not in the day files: {UNKNOWN}"),
])
def test_nothing_at_all_is_a_no_data_error_with_the_reason(settings: Settings, symbols: list[str], start: str,
                                                           end: str, method: str, reason: str) -> None:
    with pytest.raises(NoDataError) as err:
        fetch_data(symbols, start, end, "1h", method=method, settings=settings)
    assert err.value.symbols == {s: reason for s in symbols}
    assert (str(err.value.start), str(err.value.end)) == (start, end)
    assert f"in {start}..{end} via {method}" in str(err.value) and reason in str(err.value)


@pytest.mark.parametrize(("symbols", "start", "end", "method", "reason"), [
    # before: "no bars over REST: no trades in the range" / "no flat file for those days (weekend, …)", after a call
    (["AAPL"], "2024-02-10", "2024-02-11", "rest", "no trading session in the range (a weekend or market holiday)"),
    (["AAPL", "MSFT"], "2024-02-10", "2024-02-11", "flat_file",
     "no trading session in the range (a weekend or market holiday)"),
    (["AAPL"], "2030-01-02", "2030-01-03", "auto", "the range is in the future (today is "),
    (["AAPL"], "1999-01-04", "1999-01-08", "rest", "the range ends before the sandbox's first day (2003-09-10), "
                                                   "where its history starts"),
])
def test_what_the_calendar_knows_is_said_and_asks_nothing(sb: Sandbox, settings: Settings, symbols: list[str],
                                                          start: str, end: str, method: str, reason: str) -> None:
    before = sb.rest.count("/"), sb.s3.count()
    with pytest.raises(NoDataError) as err:
        fetch_data(symbols, start, end, "1h", method=method, settings=settings)
    assert all(r.startswith(reason) for r in err.value.symbols.values()) and set(err.value.symbols) == set(symbols)
    assert str(err.value).startswith(f"no bars for {', '.join(symbols)} in {start}..{end}: {reason}")
    assert str(err.value).endswith("; nothing was asked")
    assert (sb.rest.count("/"), sb.s3.count()) == before


def test_the_sandbox_first_day_is_the_sandbox_markets() -> None:
    from massive_feeds.sandbox.market import HISTORY_START
    from massive_feeds.source import SANDBOX_FIRST_DAY

    assert SANDBOX_FIRST_DAY == HISTORY_START


def test_auto_fills_flat_file_days_not_yet_published_over_rest(sb: Sandbox, settings: Settings) -> None:
    # the flat files end on Fri 2024-03-08: Mon 03-11 and Tue 03-12 are trading days without a file yet
    before = aggs(sb)
    df = fetch_data(SIX, "2024-03-04", "2024-03-12", "1d", settings=settings)
    assert df.attrs["method"] == "flat_file"
    assert df.attrs["missing_trading_days"] == ["2024-03-11", "2024-03-12"]
    assert df.attrs["filled_over_rest"] == ["2024-03-11", "2024-03-12"] and df.attrs["unfilled_days"] == []
    assert df.attrs["method_reason"] == ("6 symbol(s) over 9 day(s): large query → flat files; 2 trading day(s) "
                                         "the flat files lack came over REST (2024-03-11, 2024-03-12)")
    assert aggs(sb) - before == 6
    same_values(df, fetch_ohlcv_rest(SIX, "2024-03-04", "2024-03-12", "1d", settings=settings))
    explicit = fetch_data(SIX, "2024-03-04", "2024-03-12", "1d", method="flat_file", settings=settings)
    assert explicit.attrs["unfilled_days"] == ["2024-03-11", "2024-03-12"]
    assert explicit["timestamp"].max() < pd.Timestamp("2024-03-09", tz="America/New_York")


def test_cli_names_unpublished_days_and_fails_on_no_data_saving_nothing(sb: Sandbox, settings: Settings,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for k, v in {**sb.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_FEEDS_HOME": str(settings.home),
                 "MASSIVE_DATASETS_DIR": str(settings.datasets_dir)}.items():
        monkeypatch.setenv(k, v)
    code = main(["fetch", ",".join(SIX), "--start", "2024-03-04", "--end", "2024-03-12", "--interval", "1d",
                 "--method", "flat_file", "--dataset", "partial"])
    out, err = capsys.readouterr()
    assert code == 0 and "no flat file for trading day(s) 2024-03-11, 2024-03-12" in err
    code = main(["fetch", "ZZZZ", "--start", "2024-02-05", "--end", "2024-02-06", "--dataset", "nothing"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        f"error: no bars for ZZZZ in 2024-02-05..2024-02-06 via rest (ZZZZ: no bars over REST: {UNKNOWN})"]
    assert not (settings.datasets_dir / "nothing.parquet").exists()
