"""quality_report / format_quality_report / ``massive-feeds quality``: each finding on bars built from
the sandbox's generator (clean by construction), then damaged on purpose."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from massive_feeds.cli import main
from massive_feeds.datasets import save_dataset
from massive_feeds.errors import InvalidInputError
from massive_feeds.quality import REPORT_COLUMNS, format_quality_report, quality_report
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.market import MarketGenerator
from massive_feeds.schema import finalize_bars, parse_date_range, parse_interval
from massive_feeds.splits import splits_frame

MARKET = MarketGenerator()  # the sandbox's default seed and universe, with GOOGL's 4-for-1 on 2024-03-06
GOOGL_SPLIT = splits_frame([{"ticker": "GOOGL", "execution_date": "2024-03-06", "split_from": 1, "split_to": 4}])


def bars(tickers: list[str], start: str, end: str, interval: str = "1m", adjusted: bool = True) -> pd.DataFrame:
    window, iv = parse_date_range(start, end), parse_interval(interval)
    frames = []
    for ticker in tickers:
        b = MARKET.bars(ticker, window.start.value // 10**6, (window.end.value - 1) // 10**6, iv.multiplier,
                        iv.timespan, adjusted=adjusted)
        frames.append(pd.DataFrame({"timestamp": pd.to_datetime(b.t, unit="ms", utc=True), "symbol": ticker,
                                    "open": b.o, "high": b.h, "low": b.l, "close": b.c, "volume": b.v,
                                    "vwap": b.vw, "transactions": b.n}))
    df = finalize_bars(pd.concat(frames, ignore_index=True))
    df.attrs.update(interval=interval, adjusted=adjusted)
    return df


def row(report: pd.DataFrame, symbol: str, day: date) -> pd.Series:
    [index] = report.index[(report["symbol"] == symbol) & (report["date"] == day)]
    return report.loc[index]


def ny(day: str, hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day} {hhmm}", tz="America/New_York").tz_convert("UTC")


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    return bars(["AAPL", "O:SPY251219C00650000", "X:BTCUSD"], "2024-03-04", "2024-03-08")


# --- clean data ---------------------------------------------------------------------------------------
def test_clean_data_is_all_ok_with_full_coverage(week: pd.DataFrame) -> None:
    report = quality_report(week)
    assert list(report.columns) == list(REPORT_COLUMNS) and (report["status"] == "ok").all()
    aapl = report[report["symbol"] == "AAPL"]
    assert aapl["expected"].tolist() == [390.0] * 5 and (aapl["coverage"] > 0.99).all()
    assert (aapl["extended"] > 0).all()  # pre-market and after-hours bars are counted apart


def test_crypto_day_is_the_whole_new_york_day(week: pd.DataFrame) -> None:
    assert row(quality_report(week), "X:BTCUSD", date(2024, 3, 5))["expected"] == 1440


def test_early_close_day_expects_210_minutes() -> None:
    report = quality_report(bars(["AAPL"], "2024-11-29", "2024-11-29"))
    one = row(report, "AAPL", date(2024, 11, 29))
    assert one["expected"] == 210 and bool(one["early_close"]) and one["status"] == "ok"


# --- missing minutes: no-trade minutes apart from suspicious gaps -------------------------------------------
def test_a_long_hole_in_a_liquid_name_is_a_suspicious_gap(week: pd.DataFrame) -> None:
    t = week["timestamp"]
    holed = week[~((week["symbol"] == "AAPL") & (t >= ny("2024-03-05", "10:00")) & (t < ny("2024-03-05", "10:40")))]
    one = row(quality_report(holed), "AAPL", date(2024, 3, 5))
    assert (one["gaps"], one["gap_total_minutes"], one["status"]) == (1, 40.0, "warn")
    assert "10:00-10:40 (40 min)" in one["gap_detail"]


def test_scattered_missing_minutes_are_no_trade_minutes_not_gaps(week: pd.DataFrame) -> None:
    regular = week[(week["symbol"] == "AAPL") & (week["timestamp"].dt.date == date(2024, 3, 6))
                   & (week["timestamp"] >= ny("2024-03-06", "09:30"))].index[::20][:10]
    one = row(quality_report(week.drop(regular)), "AAPL", date(2024, 3, 6))
    assert one["gaps"] == 0 and one["no_trade_minutes"] >= 10 and one["status"] == "ok"


def test_long_runs_in_an_illiquid_name_are_not_suspicious(week: pd.DataFrame) -> None:
    option = "O:SPY251219C00650000"
    t = week["timestamp"]
    holed = week[~((week["symbol"] == option) & (t >= ny("2024-03-05", "11:00")) & (t < ny("2024-03-05", "12:00")))]
    report = quality_report(holed)
    one = row(report, option, date(2024, 3, 5))
    assert option not in report.attrs["liquid"] and one["gaps"] == 0 and one["no_trade_minutes"] >= 60


def test_a_trading_day_without_bars_is_a_missing_day(week: pd.DataFrame) -> None:
    dropped = week[~((week["symbol"] == "AAPL") & (week["timestamp"].dt.tz_convert("America/New_York").dt.date
                                                   == date(2024, 3, 6)))]
    one = row(quality_report(dropped), "AAPL", date(2024, 3, 6))
    assert (one["bars"], one["status"]) == (0, "error") and "missing_day" in one["issues"]


def test_a_missing_day_bar_is_reported_and_the_holiday_is_not_expected() -> None:
    days = bars(["AAPL"], "2024-11-25", "2024-12-03", "1d")
    report = quality_report(days.drop(days.index[1]))  # 2024-11-26
    assert row(report, "AAPL", date(2024, 11, 26))["status"] == "error"
    assert date(2024, 11, 28) not in set(report["date"])  # Thanksgiving: no session, nothing expected


# --- integrity ---------------------------------------------------------------------------------------
def test_duplicates_and_out_of_order_rows_are_counted_as_given(week: pd.DataFrame) -> None:
    aapl = week[week["symbol"] == "AAPL"].head(50)
    shuffled = pd.concat([aapl.iloc[:10], aapl.iloc[[3, 4]], aapl.iloc[10:]], ignore_index=True)
    shuffled.iloc[[20, 21]] = shuffled.iloc[[21, 20]].to_numpy()
    one = quality_report(shuffled, interval="1m").iloc[0]
    assert (one["duplicates"], one["out_of_order"], one["status"]) == (2, 2, "error")  # t3 after t9; the swap


def test_ohlc_inconsistencies_and_bad_prices_are_counted(week: pd.DataFrame) -> None:
    damaged = week.copy()
    first = damaged.index[damaged["symbol"] == "AAPL"][:3]
    damaged.loc[first[0], "high"] = damaged.loc[first[0], "low"] - 1  # high below low
    damaged.loc[first[1], "low"] = damaged.loc[first[1], "open"] + 1  # low above open
    damaged.loc[first[2], "close"] = 0.0
    one = row(quality_report(damaged), "AAPL", date(2024, 3, 4))
    assert (one["ohlc_errors"], one["bad_prices"], one["status"]) == (3, 1, "error")


# --- splits and jumps ------------------------------------------------------------------------------------
def test_raw_prices_passed_off_as_adjusted_are_an_unadjusted_split() -> None:
    raw = bars(["GOOGL"], "2024-03-04", "2024-03-08", "1d", adjusted=False)
    one = row(quality_report(raw, splits=GOOGL_SPLIT, adjusted=True), "GOOGL", date(2024, 3, 6))
    assert one["status"] == "error" and "split_unadjusted" in one["issues"] and "NOT adjusted" in one["split"]


def test_adjusted_prices_pass_the_split_check() -> None:
    one = row(quality_report(bars(["GOOGL"], "2024-03-04", "2024-03-08", "1d"), splits=GOOGL_SPLIT),
              "GOOGL", date(2024, 3, 6))
    assert one["status"] == "ok" and "adjusted (x" in one["split"] and one["jumps"] == 0


def test_raw_data_declared_raw_notes_the_expected_jump_without_error() -> None:
    raw = bars(["GOOGL"], "2024-03-04", "2024-03-08", "1d", adjusted=False)
    one = row(quality_report(raw, splits=GOOGL_SPLIT), "GOOGL", date(2024, 3, 6))
    assert one["status"] == "ok" and "expected" in one["split"]


def test_without_a_splits_table_the_jump_is_flagged_as_a_possible_split() -> None:
    raw = bars(["GOOGL"], "2024-03-04", "2024-03-08", "1d", adjusted=False)
    one = row(quality_report(raw), "GOOGL", date(2024, 3, 6))
    assert one["jumps"] == 1 and "looks like an unadjusted split" in one["jump_detail"] and one["status"] == "warn"


# --- recordings ----------------------------------------------------------------------------------------
def test_recording_gaps_from_the_metadata_land_on_their_symbol_and_day(week: pd.DataFrame) -> None:
    start = int(ny("2024-03-07", "11:00").value // 10**6)
    gaps = [{"market": "stocks", "symbols": ["AAPL"], "start_ms": start, "end_ms": start + 90_000,
             "reason": "force_disconnect", "downtime_s": 1.2}]
    week = week.copy()
    week.attrs["gaps"] = gaps
    report = quality_report(week)
    one = row(report, "AAPL", date(2024, 3, 7))
    assert (one["recording_gaps"], one["recording_gap_seconds"], one["status"]) == (1, 90.0, "warn")
    assert row(report, "X:BTCUSD", date(2024, 3, 7))["recording_gaps"] == 0


def test_a_short_recording_is_judged_on_the_span_it_covers() -> None:
    clip = bars(["AAPL"], "2024-03-05T15:00:00Z", "2024-03-05T15:19:59Z")
    one = quality_report(clip).iloc[0]
    assert one["expected"] == 20 and one["status"] == "ok"


# --- output ---------------------------------------------------------------------------------------------
def test_terminal_table_shows_summary_findings_and_the_dividend_note(week: pd.DataFrame) -> None:
    t = week["timestamp"]
    holed = week[~((week["symbol"] == "AAPL") & (t >= ny("2024-03-05", "10:00")) & (t < ny("2024-03-05", "10:40")))]
    text = format_quality_report(quality_report(holed))
    assert "AAPL" in text and "2024-03-05" in text and "gaps 10:00-10:40 (40 min)" in text
    assert "never for dividends" in text and "2024-03-04" not in text.split("Days with findings")[1]


def test_bad_frames_and_empty_frames() -> None:
    with pytest.raises(InvalidInputError, match="close"):
        quality_report(pd.DataFrame({"timestamp": [], "symbol": [], "open": [], "high": [], "low": []}))
    empty = quality_report(bars(["AAPL"], "2024-03-09", "2024-03-10"))
    assert empty.empty and "no bars" in format_quality_report(empty)


def test_cli_quality_prints_the_report_and_strict_fails_on_errors(sandbox: Sandbox, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in {**sandbox.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    raw = bars(["GOOGL"], "2024-03-04", "2024-03-08", "1d", adjusted=False)
    raw.attrs["adjusted"] = True  # a dataset that lies about its prices
    save_dataset(raw, "googl_days")
    assert main(["quality", "googl_days"]) == 0
    out = capsys.readouterr().out
    assert "4-for-1" in out and "NOT adjusted" in out and "Data quality: 1 symbol(s), 5 day(s)" in out
    assert main(["quality", "googl_days", "--strict"]) == 1


def test_crypto_day_of_the_dst_switch_has_25_hours() -> None:
    report = quality_report(bars(["X:BTCUSD"], "2024-11-02", "2024-11-04"))
    assert row(report, "X:BTCUSD", date(2024, 11, 3))["expected"] == 1500


def test_cli_quality_names_why_the_sandbox_starts_truthfully(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSIVE_")}
    env.update(MASSIVE_FEEDS_HOME=str(tmp_path / "home"), MASSIVE_FEEDS_CONFIG=str(tmp_path / "none"))
    cli = [sys.executable, "-m", "massive_feeds"]
    fetched = subprocess.run([*cli, "fetch", "GOOGL", "--start", "2024-03-04", "--end", "2024-03-08", "--interval",
                              "1d", "--dataset", "g"], env=env, capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    report = subprocess.run([*cli, "quality", "g"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "MASSIVE_SANDBOX=1" not in report.stderr.split("; MASSIVE_SANDBOX=0")[0]  # before: claimed, though unset
    assert "no API key configured: this process uses the built-in sandbox" in report.stderr
