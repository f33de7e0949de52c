"""Datasets: atomic parquet with metadata, append/merge de-duplication, safe names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from massive_feeds import list_datasets, load_dataset, save_dataset, stack_data
from massive_feeds.config import Settings
from massive_feeds.errors import DatasetError, InvalidInputError


def bars(symbol: str, minutes: range, price: float = 100.0) -> pd.DataFrame:
    ts = pd.Timestamp("2024-03-05 14:30", tz="UTC") + pd.to_timedelta(list(minutes), unit="min")
    n = len(ts)
    return pd.DataFrame({"timestamp": ts, "symbol": symbol, "open": price, "high": price + 1, "low": price - 1,
                         "close": price, "volume": 10.0, "vwap": price, "transactions": np.arange(n)})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "datasets"


def test_save_and_load_round_trip(folder: Path) -> None:
    df = bars("AAPL", range(5))
    save_dataset(df, "one", folder=folder)
    pd.testing.assert_frame_equal(load_dataset("one", folder=folder), df, check_dtype=False)


def test_list_shows_symbols_range_rows_source_and_tags(folder: Path) -> None:
    df = pd.concat([bars("AAPL", range(3)), bars("MSFT", range(2))])
    df.attrs.update(method="rest", interval="1m")
    save_dataset(df, "morning", tags=["open", "test"], folder=folder)
    row = list_datasets(folder=folder).iloc[0]
    assert row["name"] == "morning" and row["rows"] == 5
    assert row["symbols"] == ["AAPL", "MSFT"]
    assert row["source"] == "rest" and row["interval"] == "1m" and row["tags"] == ["open", "test"]
    assert row["start"].startswith("2024-03-05T14:30")


def test_append_deduplicates_keeping_the_newest(folder: Path) -> None:
    save_dataset(bars("AAPL", range(0, 5), price=100), "d", folder=folder)
    save_dataset(bars("AAPL", range(3, 8), price=200), "d", append=True, folder=folder)
    out = load_dataset("d", folder=folder)
    assert len(out) == 8
    assert list(out["open"]) == [100] * 3 + [200] * 5


def test_append_keeps_earlier_tags(folder: Path) -> None:
    save_dataset(bars("AAPL", range(2)), "d", tags=["morning"], folder=folder)
    save_dataset(bars("AAPL", range(2, 4)), "d", append=True, tags=["fomc"], folder=folder)
    assert list_datasets(folder=folder).iloc[0]["tags"] == ["fomc", "morning"]


def test_stack_replace_swaps_whole_symbols() -> None:
    old = pd.concat([bars("AAPL", range(5)), bars("MSFT", range(5))])
    out = stack_data(old, bars("AAPL", range(2), price=300), mode="replace")
    assert len(out[out.symbol == "AAPL"]) == 2 and len(out[out.symbol == "MSFT"]) == 5


def test_stack_merge_fills_gaps_from_existing_rows() -> None:
    old = bars("AAPL", range(2))
    new = bars("AAPL", range(2), price=300)
    new["vwap"] = np.nan
    out = stack_data(old, new, mode="merge")
    assert list(out["open"]) == [300, 300] and list(out["vwap"]) == [100, 100]


def test_bad_stack_mode_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        stack_data(None, bars("A", range(1)), mode="upsert")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/b", "", ".hidden", "x" * 200])
def test_path_like_names_are_rejected(folder: Path, name: str) -> None:
    with pytest.raises(InvalidInputError):
        save_dataset(bars("AAPL", range(1)), name, folder=folder)


def test_missing_dataset_is_a_dataset_error(folder: Path) -> None:
    with pytest.raises(DatasetError, match="nope"):
        load_dataset("nope", folder=folder)


def _save_with_tiny_disk(folder: str, rows: int) -> str:
    """In a child process whose files may not grow past 64 kB (a full disk, as the writer sees it)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
    try:
        save_dataset(bars("AAPL", range(rows)), "d", folder=folder, overwrite=True)
    except DatasetError as exc:
        return f"DatasetError: {exc}"
    return "saved"


def test_full_disk_is_a_dataset_error_and_the_old_dataset_survives(folder: Path) -> None:
    import multiprocessing

    save_dataset(bars("AAPL", range(3)), "d", folder=folder)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        outcome = pool.apply(_save_with_tiny_disk, (str(folder), 200_000))
    assert outcome.startswith("DatasetError")
    assert len(load_dataset("d", folder=folder)) == 3
    assert [p.name for p in folder.iterdir() if p.name != ".d.lock"] == ["d.parquet"]


def test_interrupted_write_leaves_no_trusted_file(folder: Path) -> None:
    save_dataset(bars("AAPL", range(3)), "d", folder=folder)
    bad = bars("AAPL", range(3))
    bad["note"] = [object(), object(), object()]  # unserialisable: the writer fails mid-way
    with pytest.raises(DatasetError, match="cannot be stored"):
        save_dataset(bad, "d", folder=folder, overwrite=True)
    assert len(load_dataset("d", folder=folder)) == 3
    assert [p.name for p in folder.iterdir() if p.name != ".d.lock"] == ["d.parquet"]  # no temp files left


_APPENDER = """
import sys
import numpy as np, pandas as pd
from massive_feeds import save_dataset
folder, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.stdin.readline()  # both processes start appending together
for i in range(n):
    ts = pd.Timestamp("2024-03-05 14:30", tz="UTC") + pd.Timedelta(minutes=i)
    bar = pd.DataFrame({"timestamp": [ts], "symbol": [who], "open": [1.0], "high": [1.0], "low": [1.0],
                        "close": [float(i)], "volume": [1.0], "vwap": [1.0], "transactions": [i]})
    save_dataset(bar, "shared", append=True, folder=folder)
print("done")
"""


def test_two_processes_appending_to_one_dataset_lose_no_rows(folder: Path) -> None:
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(folder), who, "25"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for who in ("AAPL", "MSFT")]
    for p in procs:  # release both at once
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outputs == ["done\n", "done\n"]
    df = load_dataset("shared", folder=folder)
    assert len(df) == 50
    assert df.groupby("symbol")["close"].apply(sorted).to_dict() == {s: [float(i) for i in range(25)]
                                                                     for s in ("AAPL", "MSFT")}


def test_save_dataset_without_timestamp_is_one_line_invalid_input(folder: Path) -> None:
    with pytest.raises(InvalidInputError, match="'x'.*no timestamp column"):
        save_dataset(pd.DataFrame({"symbol": ["AAPL"], "close": [1.0]}), "x", folder=folder)
    assert not (folder / "x.parquet").exists()


def test_default_folder_comes_from_settings(settings: Settings) -> None:
    path = save_dataset(bars("AAPL", range(1)), "cfg", settings=settings)
    assert path.parent == settings.datasets_dir


# --- append never destroys a dataset; one overwrite rule -----------------------------------------------
def ticks(symbol: str = "AAPL") -> pd.DataFrame:
    from massive_feeds.tickschema import finalize_ticks

    ts = pd.Timestamp("2024-03-05 14:30", tz="UTC") + pd.to_timedelta([0, 1, 2], unit="s")
    return finalize_ticks({"timestamp": ts, "symbol": [symbol] * 3, "kind": ["quote"] * 3,
                           "bid": [10.0, 10.1, 10.2], "ask": [10.2, 10.3, 10.4]})


def labelled(df: pd.DataFrame, interval: str) -> pd.DataFrame:
    df.attrs["interval"] = interval
    return df


@pytest.mark.parametrize("existing, new, message", [
    (lambda: labelled(bars("AAPL", range(3)), "5m"), lambda: labelled(bars("AAPL", range(60, 63)), "1h"),
     "cannot append 1h bars to dataset 'd', which holds 5m bars"),
    (ticks, lambda: labelled(bars("AAPL", range(3)), "1h"),
     "cannot append 1h bars to dataset 'd', which holds trades/quotes (ticks)"),
    (lambda: labelled(bars("AAPL", range(3)), "1m"), ticks,
     "cannot append trades/quotes (ticks) to dataset 'd', which holds 1m bars"),
    (lambda: labelled(bars("AAPL", range(3)), "1m"), lambda: labelled(bars("X:BTCUSD", range(3, 6)), "1m"),
     "cannot append crypto rows to dataset 'd', which holds stocks only"),
    (ticks, lambda: ticks("C:EURUSD"), "cannot append forex rows to dataset 'd', which holds stocks only"),
])
def test_append_of_another_kind_is_refused_and_the_file_is_unchanged(folder: Path, existing, new,
                                                                     message: str) -> None:
    from massive_feeds.errors import IncompatibleDatasetError

    path = save_dataset(existing(), "d", folder=folder)
    before = path.read_bytes()
    with pytest.raises(IncompatibleDatasetError) as caught:
        save_dataset(new(), "d", append=True, folder=folder)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, InvalidInputError) and isinstance(caught.value, DatasetError)
    assert path.read_bytes() == before


def test_append_of_the_same_interval_spelled_differently_keeps_the_label(folder: Path) -> None:
    save_dataset(labelled(bars("AAPL", range(3)), "1m"), "d", folder=folder)
    save_dataset(labelled(bars("AAPL", range(3, 5)), "1min"), "d", append=True, folder=folder)
    save_dataset(bars("AAPL", range(5, 6)), "d", append=True, folder=folder)  # unlabelled rows: the label stays
    row = list_datasets(folder=folder).iloc[0]
    assert row["interval"] == "1m" and row["rows"] == 6


def test_saving_over_an_existing_name_is_refused_unless_overwrite(folder: Path) -> None:
    from massive_feeds.errors import DatasetExistsError

    path = save_dataset(labelled(bars("AAPL", range(3)), "5m"), "d", folder=folder)
    before = path.read_bytes()
    with pytest.raises(DatasetExistsError, match=r"^dataset 'd' already exists \(3 rows of 5m bars\); "
                                                 r"pass overwrite=True"):
        save_dataset(bars("AAPL", range(7)), "d", folder=folder)
    assert path.read_bytes() == before
    save_dataset(bars("AAPL", range(7)), "d", folder=folder, overwrite=True)
    assert len(load_dataset("d", folder=folder)) == 7
