"""The one REST page decoder (``rest/decode.py``, used by ``parse_aggs`` / ``parse_ticks``) on every valid form
of a page (compact, spaced, pretty, keys in any order, optional keys present or absent) and on damaged ones,
held to an independent oracle (orjson); the direct frame build of one symbol's bars (against
``finalize_bars``); and the background result-cache write, which must not see the caller's later edits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

import massive_feeds.cache as cache_module
from massive_feeds.cache import ResultCache, wait_for_result_cache
from massive_feeds.errors import BadResponseError
from massive_feeds.fetch import _final_bars
from massive_feeds.rest.aggs import AGG_FIELDS, AggsPage, parse_aggs
from massive_feeds.rest.ticks import parse_ticks
from massive_feeds.schema import INTERVALS, finalize_bars, parse_date_range

REAL = Path(__file__).parent / "fixtures" / "real"
T0 = 1_704_085_200_000  # 2024-01-01 05:00 UTC in ms


def bar(i: int, rng: np.random.Generator) -> dict[str, object]:
    """A bar in the service's key order, with awkward but valid numbers (many digits, zeros, ints)."""
    price = float(rng.uniform(1e-3, 1e5))
    return {"v": float(rng.choice([rng.uniform(0, 1e9), 0.000123, 12345678.0])), "vw": round(price, 4),
            "o": price, "c": price * 1.0001, "h": price * 1.01, "l": 0 if i % 7 == 0 else price / 1.01,
            "t": T0 + 60_000 * i, "n": int(rng.integers(0, 10_000))}


def body_of(results: list[dict[str, object]], **envelope: object) -> bytes:
    return orjson.dumps({"ticker": "X:BTCUSD", "queryCount": len(results), "resultsCount": len(results),
                         "adjusted": True, "status": "OK", "request_id": "abc", "results": results, **envelope})


def oracle(body: bytes) -> dict[str, np.ndarray]:
    """The columns as a plain JSON parser reads them (absent or null → NaN)."""
    rows = orjson.loads(body)["results"]
    out = {name: np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=np.float64)
           for key, name in AGG_FIELDS.items()}
    out["timestamp"] = out["timestamp"].astype(np.int64)
    return out


def assert_columns(page: AggsPage, expected: dict[str, np.ndarray]) -> None:
    assert set(page.columns) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(page.columns[name], values, err_msg=name)  # exact, NaN == NaN


def test_compact_page_every_value_is_exact() -> None:
    rng = np.random.default_rng(16)
    body = body_of([bar(i, rng) for i in range(3000)], next_url="https://api.massive.com/v2/aggs/x?cursor=abc")
    page = parse_aggs(body)
    assert_columns(page, oracle(body))
    assert (page.status, page.ticker, page.request_id) == ("OK", "X:BTCUSD", "abc")
    assert page.next_url == "https://api.massive.com/v2/aggs/x?cursor=abc"


def test_real_page_compacted_parses_like_the_pretty_original() -> None:
    pretty = (REAL / "rest" / "aggs_AAPL_1_day_2005-04-01_2005-04-04.json").read_bytes()
    compact = orjson.dumps(orjson.loads(pretty))
    assert_columns(parse_aggs(compact), parse_aggs(pretty).columns)


def every_form(body: bytes) -> dict[str, bytes]:
    """The same page as the service may send it: compact, spaced (``json.dumps``), pretty, keys sorted, every
    bar's keys reversed, the envelope after the results."""
    import json

    data = orjson.loads(body)
    results = data.pop("results")
    return {
        "compact": body, "spaced": json.dumps({**data, "results": results}).encode(),
        "pretty": orjson.dumps({**data, "results": results}, option=orjson.OPT_INDENT_2),
        "sorted-keys": json.dumps({**data, "results": results}, sort_keys=True, indent="\t").encode(),
        "bar-keys-reversed": orjson.dumps({**data, "results": [dict(reversed(list(r.items()))) for r in results]}),
        "envelope-last": orjson.dumps({"results": results, **data}),
    }


@pytest.mark.parametrize("form", ["compact", "spaced", "pretty", "sorted-keys", "bar-keys-reversed", "envelope-last"])
def test_every_valid_form_of_a_page_gives_the_same_columns(form: str) -> None:
    rng = np.random.default_rng(25)
    rows = [bar(i, rng) for i in range(400)]
    for r in rows[::3]:  # optional keys absent from some bars
        del r["vw"], r["n"]
    body = body_of(rows, next_url="https://api.massive.com/v2/aggs/x?cursor=abc")
    page = parse_aggs(every_form(body)[form])
    assert_columns(page, oracle(body))
    assert np.isnan(page.columns["vwap"][0]) and page.columns["transactions"][1] == rows[1]["n"]
    assert (page.next_url, page.ticker, page.request_id) == ("https://api.massive.com/v2/aggs/x?cursor=abc",
                                                             "X:BTCUSD", "abc")


def swapped(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Row 1 with its keys in another order (o and c swapped in position)."""
    r = rows[1]
    rows[1] = {"v": r["v"], "vw": r["vw"], "c": r["c"], "o": r["o"], "h": r["h"], "l": r["l"], "t": r["t"], "n": r["n"]}
    return rows


@pytest.mark.parametrize("change", [
    pytest.param(swapped, id="keys-in-another-order"),  # open and close must not swap
    pytest.param(lambda rows: [rows[0], {k: v for k, v in rows[1].items() if k != "vw"}, *rows[2:]],
                 id="one-bar-without-vw"),  # shifted columns: vwap would get open's value
    pytest.param(lambda rows: [{**rows[0], "vw": None}, *rows[1:]], id="null-vwap"),  # "null" minus key letters
    pytest.param(lambda rows: [{**r, "otc": True} for r in rows], id="extra-boolean-key"),
    pytest.param(lambda rows: [{**r, "ex": 1.5} for r in rows], id="key-with-an-exponent-letter"),
    pytest.param(lambda rows: [{**rows[0], "note": "a},{\"o\":1"}, *rows[1:]], id="string-value-with-braces"),
    pytest.param(lambda rows: [{k: v for k, v in r.items() if k != "n"} for r in rows], id="no-transactions"),
    pytest.param(lambda rows: [{**rows[0], "v": 1.5e-05}, {**rows[1], "v": 3e20}, *rows[2:]],
                 id="exponents"),  # an exponent's 'e' must survive
])
def test_irregular_pages_still_parse_exactly(change) -> None:
    rng = np.random.default_rng(17)
    body = body_of(change([bar(i, rng) for i in range(50)]))
    assert_columns(parse_aggs(body), oracle(body))


@pytest.mark.parametrize("results", [
    b'{"v":1,"vw":2,"o":3,"c":4,"h":6,"l":5,"t":7:8,"n":9}',  # a stray colon
    b'{"v":1,"vw":2,"o":3,"c":4,"h":6,"l":5,"t":7,"n":9x}',  # a stray letter
    b'{"v":1,"vw":2,"o":3,"c":4,"h":6,"l":5,"t":7,"n":}',  # an empty value
    b'{"v":1,"vw":2,"o":3,"c":4,"h":6,"l":5,"t":7,"n":1},{"v":1,"vw":2,"o":3c,"c":4,"h":6,"l":5,"t":8,"n":1}',
    b'{"v":1,"vw":2,"o":3,"c":4,"h":6,"l":5,"t":7,"n":1}5,{"v":1,"vw":2,"o":3,"c":4,"h":6,"l":5,"t":8,"n":1}',
])  # the 4th: a letter glued to a value; the last: a number between two objects
def test_malformed_bars_are_loud_never_a_number(results: bytes) -> None:
    body = b'{"status":"OK","request_id":"r","results":[' + results + b"]}"
    with pytest.raises(BadResponseError):
        parse_aggs(body)


def page_of(ms: list[int], close: list[float]) -> AggsPage:
    n = len(ms)
    cols = {name: np.full(n, 1.0) for name in AGG_FIELDS.values()}
    cols["timestamp"] = np.array(ms, dtype=np.int64)
    cols["close"] = np.array(close)
    cols["transactions"] = np.array([np.nan] + [3.0] * (n - 1))
    return AggsPage(cols, None, "OK", None, "AAPL")


def reference_frame(page: AggsPage, window) -> pd.DataFrame:
    """What the general path gives: frame, cut to the window, finalize_bars."""
    df = pd.DataFrame({k: v for k, v in page.columns.items() if k != "timestamp"})
    df.insert(0, "timestamp", pd.to_datetime(page.columns["timestamp"], unit="ms", utc=True))
    df.insert(1, "symbol", "AAPL")
    inside = (df["timestamp"] + pd.Timedelta(hours=1) > window.start) & (df["timestamp"] < window.end)
    return finalize_bars(df[inside])


@pytest.mark.parametrize("order", ["sorted", "unsorted-with-a-duplicate"])
def test_one_symbol_frame_equals_the_general_path(order: str) -> None:
    """The direct build must give finalize_bars' frame exactly (dtypes, window cut at both ends, NaN
    transactions as 0, writeable columns); unsorted pages must still be sorted and de-duplicated."""
    window = parse_date_range("2024-03-05", "2024-03-05")  # New York day: 05:00 UTC .. next 05:00 UTC
    hour = 3_600_000
    # hourly bars from 90 min before the window: the first ends before it, the second overlaps its start
    # (kept), and the last ones start at or after its end (dropped)
    first = window.start.value // 10**6 - 3 * hour // 2
    ms = [first + i * hour for i in range(28)]
    close = [float(i) for i in range(28)]
    if order != "sorted":
        ms, close = ms[::-1] + [ms[5]], close[::-1] + [99.0]
    page = page_of(ms, close)
    got = _final_bars([page], "AAPL", INTERVALS["1h"], window)
    want = reference_frame(page, window)
    pd.testing.assert_frame_equal(got, want)
    assert len(got) == 25 and got["timestamp"].iloc[0] == window.start - pd.Timedelta(minutes=30)
    got.loc[0, "close"] = -1.0  # editable (parsed columns are read-only Arrow views)


def test_background_cache_write_keeps_the_values_handed_to_it(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """put_later makes no deep copy up front: the caller's later edits must reach neither the entry on
    disk nor the in-memory answer served while the write is pending."""
    release = threading.Event()
    real_write = cache_module._write

    def held_write(path: Path, df: pd.DataFrame) -> None:  # the write waits until the caller has edited
        assert release.wait(30)
        real_write(path, df)

    monkeypatch.setattr(cache_module, "_write", held_write)
    cache = ResultCache(tmp_path / "rest")
    df = pd.DataFrame({"timestamp": pd.to_datetime([1, 2], unit="s", utc=True), "close": [1.0, 2.0]})
    original = df.copy(deep=True)
    cache.put_later("k" * 32, df)
    try:
        df.loc[0, "close"] = -5.0
        df["close"] += 100
        pd.testing.assert_frame_equal(cache.get("k" * 32), original)  # served from memory, still pending
    finally:
        release.set()
    assert wait_for_result_cache(timeout=30)
    [entry] = (tmp_path / "rest").rglob("*.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(entry), original)


def test_entry_handed_over_just_before_exit_is_written_whole(tmp_path: Path) -> None:
    """The writer is a long-lived pool thread: the interpreter must still finish its queue at exit (a daemon
    writer would lose the entry of a script that ends right after its fetch)."""
    script = ("import sys, pandas as pd; from pathlib import Path; from massive_feeds.cache import ResultCache;"
              "ResultCache(Path(sys.argv[1])).put_later('e' * 32, pd.DataFrame({'x': range(200_000)}))")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "rest")], check=True, timeout=60)
    [entry] = (tmp_path / "rest").rglob("*.parquet")
    assert pd.read_parquet(entry)["x"].tolist() == list(range(200_000))
    assert not [p for p in (tmp_path / "rest").rglob("*") if p.is_file() and p.suffix != ".parquet"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_forked_child_writes_its_own_entries(tmp_path: Path) -> None:
    """A child forked after the parent's writer thread exists has no such thread: its entries must still be
    written (with the parent's pool object they would queue forever and wait_for_result_cache would time out)."""
    cache = ResultCache(tmp_path / "rest")
    cache.put_later("p" * 32, pd.DataFrame({"x": [1]}))  # the parent's writer thread now exists
    assert wait_for_result_cache(timeout=30)
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only when its entry landed
        ok = False
        try:
            cache.put_later("c" * 32, pd.DataFrame({"x": [2]}))
            ok = wait_for_result_cache(timeout=30) and cache.get("c" * 32)["x"].tolist() == [2]
        finally:
            os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def quote(i: int, rng: np.random.Generator) -> dict[str, object]:
    """A stocks quote in the service's key order (keys full of the letter 'e', values without exponents)."""
    bid = round(float(rng.uniform(1, 900)), 2)
    sip = 1_709_251_275_431_000_000 + i * 7_919_000
    return {"ask_exchange": int(rng.integers(1, 20)), "ask_price": round(bid + 0.03, 2),
            "ask_size": int(rng.integers(1, 500)), "bid_exchange": int(rng.integers(1, 20)), "bid_price": bid,
            "bid_size": int(rng.integers(1, 500)), "participant_timestamp": sip - 113_000,
            "sequence_number": 4093 + i, "sip_timestamp": sip, "tape": 3}


@pytest.mark.parametrize("with_conditions", [False, True])
def test_quotes_page_parses_exactly_with_or_without_conditions(with_conditions: bool) -> None:
    """Uniform compact quotes, or one quote with conditions among them: every column equals what a plain JSON
    parse gives, and the pretty-printed page gives the same columns."""
    rng = np.random.default_rng(18)
    rows = [quote(i, rng) for i in range(2000)]
    if with_conditions:
        rows[7] = {**rows[7], "conditions": [1, 12]}
    body = orjson.dumps({"results": rows, "status": "OK", "request_id": "q"})
    page = parse_ticks(body, "quotes")
    want = {"timestamp": "sip_timestamp", "bid": "bid_price", "ask": "ask_price", "bid_size": "bid_size",
            "ask_size": "ask_size", "exchange": "bid_exchange", "ask_exchange": "ask_exchange",
            "sequence_number": "sequence_number", "tape": "tape"}
    for ours, wire in want.items():
        np.testing.assert_array_equal(page.columns[ours], [r[wire] for r in rows], err_msg=ours)
    conditions = page.columns["conditions"].to_pylist()
    assert conditions == ["1,12" if i == 7 and with_conditions else "" for i in range(len(rows))]
    pretty = parse_ticks(orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2), "quotes")
    assert set(pretty.columns) == set(page.columns)
    for name, values in pretty.columns.items():
        np.testing.assert_array_equal(np.asarray(page.columns[name]), np.asarray(values), err_msg=name)


def test_entry_is_written_now_when_the_writer_no_longer_takes_work(tmp_path: Path) -> None:
    """At interpreter shutdown the writer pool refuses new work (a fetch finishing in a late thread): the entry
    is then written on the spot instead of the fetch failing with RuntimeError."""
    from massive_feeds.runtime import Runtime

    with Runtime():
        cache_module._writer().pool.shutdown()  # this runtime's writer pool, as at interpreter shutdown
        cache = ResultCache(tmp_path / "rest")
        df = pd.DataFrame({"x": [1.5, 2.5]})
        cache.put_later("s" * 32, df)
        [entry] = (tmp_path / "rest").rglob("*.parquet")  # already there: no wait
        pd.testing.assert_frame_equal(pd.read_parquet(entry), df)
        assert wait_for_result_cache(timeout=0)


# --- trades and quotes: strings, arrays, nulls ----------------------------------------------------------
#: tick column → wire key (besides timestamp, conditions and id, which the oracle builds on its own)
TICK_WIRE = {
    "quotes": {"ask_exchange": "ask_exchange", "ask": "ask_price", "ask_size": "ask_size", "exchange": "bid_exchange",
               "bid": "bid_price", "bid_size": "bid_size", "sequence_number": "sequence_number", "tape": "tape"},
    "trades": {"exchange": "exchange", "price": "price", "sequence_number": "sequence_number", "size": "size",
               "tape": "tape"},
}
TICK_INTS = {"ask_exchange", "exchange", "sequence_number", "tape"}


def tick_oracle(body: bytes, kind: str) -> dict[str, list[object]]:
    """The tick columns as a plain JSON parse gives them: the SIP time, else the participant time; absent or
    null integers 0, floats NaN; condition codes joined by ','; a missing id ''."""
    rows = orjson.loads(body)["results"]
    out: dict[str, list[object]] = {
        "timestamp": [r["participant_timestamp"] if r.get("sip_timestamp") is None else r["sip_timestamp"]
                      for r in rows],
        "conditions": [",".join(str(c) for c in r.get("conditions") or []) for r in rows],
    }
    for ours, wire in TICK_WIRE[kind].items():
        values = [r.get(wire) for r in rows]
        out[ours] = [0 if v is None else v for v in values] if ours in TICK_INTS else \
            [np.nan if v is None else float(v) for v in values]
    if kind == "trades":
        out["id"] = [r.get("id") or "" for r in rows]
    return out


def assert_ticks(body: bytes, kind: str) -> None:
    """parse_ticks gives exactly the oracle's columns, with the tick schema's types."""
    cols = parse_ticks(body, kind).columns
    expected = tick_oracle(body, kind)
    assert set(cols) == set(expected)
    for name, values in expected.items():
        got = cols[name]
        if name in ("conditions", "id"):
            assert got.to_pylist() == values, name
        else:
            assert got.dtype == (np.float64 if name not in TICK_INTS | {"timestamp"} else np.int64), name
            np.testing.assert_array_equal(got, np.array(values, dtype=got.dtype), err_msg=name)  # NaN == NaN


def trade(i: int, rng: np.random.Generator) -> dict[str, object]:
    """A stocks trade in the service's key order: conditions first (an array), a string id, TRF fields."""
    sip = 1_709_251_275_431_000_000 + i * 3_917_000
    return {"conditions": [[], [12], [12, 37], [14, 41, 0]][i % 4], "correction": 0, "exchange": int(rng.integers(1, 21)),
            "id": ["52983525029461", "1", "", "-0.5+", str(i)][i % 5], "participant_timestamp": sip - 91_000,
            "price": round(float(rng.uniform(1, 900)), int(rng.integers(0, 5))), "sequence_number": 4093 + i,
            "sip_timestamp": sip, "size": int(rng.integers(1, 5000)), "tape": 3, "trf_id": 201,
            "trf_timestamp": sip - 45_000}


def trades_body(rows: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"results": rows, "status": "OK", "request_id": "t",
                         "next_url": "https://api.massive.com/v3/trades/AAPL?cursor=YXA9MTkyOD"})


def real_tick_pages() -> list[object]:
    rest = REAL / "rest"
    spec = orjson.loads((rest / "ticks_spec_examples.json").read_bytes())
    pages = [pytest.param(rest / "trades_AAPL_limit2.json", "trades", id="mock-trades-AAPL"),
             pytest.param(rest / "quotes_AAPL.json", "quotes", id="mock-quotes-AAPL")]
    pages += [pytest.param(path, f"{path.split('/')[2]}", id=f"spec-{path}") for path in spec]
    return pages


@pytest.mark.parametrize("source,kind", real_tick_pages())
def test_real_tick_pages_compact_or_pretty_every_value_is_exact(source: object, kind: str) -> None:
    """Real payloads (official client mocks, OpenAPI examples) — string ids, condition arrays, quotes without
    SIP time, an options page whose first trade has no conditions — compacted as the service sends them or
    pretty-printed, give exactly the plain JSON parse."""
    if isinstance(source, Path):
        pretty = source.read_bytes()
    else:
        pretty = orjson.dumps(orjson.loads((REAL / "rest" / "ticks_spec_examples.json").read_bytes())[source],
                              option=orjson.OPT_INDENT_2)
    compact = orjson.dumps(orjson.loads(pretty))
    assert_ticks(compact, kind)
    assert_ticks(pretty, kind)
    assert parse_ticks(compact, kind).next_url == orjson.loads(compact).get("next_url")


def test_trades_page_with_ids_and_condition_arrays_parses_exactly() -> None:
    rng = np.random.default_rng(19)
    body = trades_body([trade(i, rng) for i in range(3000)])
    assert_ticks(body, "trades")
    page = parse_ticks(body, "trades")
    assert page.columns["conditions"].to_pylist()[:4] == ["", "12", "12,37", "14,41,0"]
    assert page.columns["id"].to_pylist()[:5] == ["52983525029461", "1", "", "-0.5+", "4"]


def with_id(body: bytes, row: int, raw_id: bytes) -> bytes:
    """``body`` with the id of trade ``row`` replaced by the raw JSON text ``raw_id``."""
    rows = orjson.loads(body)["results"]
    old = b'"id":' + orjson.dumps(rows[row]["id"]) + b',"participant_timestamp":' + \
        str(rows[row]["participant_timestamp"]).encode()
    assert body.count(old) == 1
    return body.replace(old, b'"id":' + raw_id + old[old.index(b',"participant'):])


@pytest.mark.parametrize("raw_id,text", [
    (b'"12,5"', "12,5"),  # a comma
    (b'"12\\"5"', '12"5'),  # an escaped quote
    (b'"12\\\\5"', "12\\5"),  # an escaped backslash
    (b'"\\u00e9\\u0031"', "é1"),  # unicode escapes
    (b'"12a"', "12a"),  # a letter
    ('"1é"'.encode(), "1é"),  # raw UTF-8
    (b'"1 2"', "1 2"),  # a space
    (b'"1:2"', "1:2"),  # a colon, deleted with the frame
    (b'"1}]"', "1}]"),  # a brace and bracket
])
def test_ids_with_any_characters_parse_exactly(raw_id: bytes, text: str) -> None:
    rng = np.random.default_rng(20)
    body = with_id(trades_body([trade(i, rng) for i in range(200)]), 7, raw_id)
    assert_ticks(body, "trades")
    assert parse_ticks(body, "trades").columns["id"].to_pylist()[7] == text


def drop_key(rows: list[dict[str, object]], row: int, key: str) -> list[dict[str, object]]:
    rows[row] = {k: v for k, v in rows[row].items() if k != key}
    return rows


@pytest.mark.parametrize("change", [
    pytest.param(lambda rows: drop_key(rows, 5, "conditions"), id="no-conditions-in-one"),  # the real norm
    pytest.param(lambda rows: drop_key(rows, 5, "id"), id="no-id-in-one"),
    pytest.param(lambda rows: drop_key(rows, 5, "tape"), id="no-tape-in-one"),
    pytest.param(lambda rows: drop_key(rows, 0, "sip_timestamp"), id="no-sip-time-in-the-first"),
    pytest.param(lambda rows: [{**rows[0], "id": None}, *rows[1:]], id="null-id"),
    pytest.param(lambda rows: [rows[0], {**rows[1], "conditions": None}, *rows[2:]], id="null-conditions"),
    pytest.param(lambda rows: [rows[0], {**rows[1], "price": None}, *rows[2:]], id="null-price"),
    pytest.param(lambda rows: [rows[0], {**rows[1], "sip_timestamp": None}, *rows[2:]], id="null-sip-time"),
    pytest.param(lambda rows: [rows[0], {**rows[1], "exchange": None}, *rows[2:]], id="null-exchange"),
    pytest.param(lambda rows: [{**rows[0], "id": 4093}, *rows[1:]], id="number-id-in-the-first"),
    pytest.param(lambda rows: [{**r, "conditions": [-1]} for r in rows], id="negative-condition"),
    pytest.param(lambda rows: [{**r, "conditions": [10**17 + 3, 0]} for r in rows], id="18-digit-condition"),
    pytest.param(lambda rows: [{**r, "conditions": [10**18 + 3]} for r in rows], id="19-digit-condition"),
    pytest.param(lambda rows: [{**r, "size": 1.5e-05} for r in rows], id="exponent-size"),
    pytest.param(lambda rows: [{**r, "indicators": [1, 2], "x": {"a": 1}} for r in rows], id="nested-object"),
    pytest.param(lambda rows: [{**r, "exchange": str(r["exchange"])} for r in rows], id="quoted-exchange"),
    pytest.param(lambda rows: [{k: r[k] for k in reversed(list(r))} for r in rows[:1]] + rows[1:],
                 id="first-in-another-order"),
    pytest.param(lambda rows: [*rows[:9], {("tape" if k == "size" else "size" if k == "tape" else k): v
                                           for k, v in rows[9].items()}, *rows[10:]],
                 id="size-and-tape-named-the-other-way-in-one"),  # same lengths: positions alone cannot tell
    pytest.param(lambda rows: [*rows[:9], {("pri1ce" if k == "price" else k): v for k, v in rows[9].items()},
                 *rows[10:]], id="a-digit-inside-a-key"),  # an unknown key: that price is NaN, never "1" + price
])
def test_irregular_trades_pages_still_parse_exactly_or_loudly(change) -> None:
    """Each change is either read exactly or refused with BadResponseError, exactly as a plain JSON parse into
    the tick schema does — never a different number or text."""
    rng = np.random.default_rng(21)
    body = trades_body(change([trade(i, rng) for i in range(60)]))
    try:
        expected = tick_oracle(body, "trades")
        pa.Table.from_pylist([{"id": r.get("id"), "exchange": r.get("exchange"), "conditions": r.get("conditions")}
                              for r in orjson.loads(body)["results"]],
                             schema=pa.schema([("id", pa.string()), ("exchange", pa.int64()),
                                               ("conditions", pa.list_(pa.int64()))]))
    except (TypeError, ValueError, pa.ArrowException):
        expected = None  # the general path refuses such a page
    if expected is None:
        with pytest.raises(BadResponseError):
            parse_ticks(body, "trades")
    else:
        assert_ticks(body, "trades")


@pytest.mark.parametrize("bad", [
    (b'"id":"4093"', b'"id":"40"93'),  # number characters after a string
    (b'"id":"4093"', b'"id":4"093"'),  # ... and before
    (b'"conditions":[12,37]', b'"conditions":[12,37]5'),  # after an array
    (b'"conditions":[12,37]', b'"conditions":[12,,37]'),
    (b'"conditions":[12,37]', b'"conditions":[12,37,]'),
    (b'"conditions":[12,37]', b'"conditions":[,12,37]'),
    (b'"conditions":[12,37]', b'"conditions":[012,37]'),  # a leading zero (not JSON)
    (b'"conditions":[12,37]', b'"conditions":[12.5,37]'),  # not an integer
    (b'"conditions":[12,37]', b'"conditions":[12-37]'),
    (b'"conditions":[12,37]', b'"conditions":[12,37'),  # unclosed
    (b'"conditions":[12,37]', b'"conditions":12,37]'),  # unopened
    (b'"conditions":[12,37]', b'"conditions":[12;37]'),
    (b'"conditions":[12,37]', b'"conditions":[9999999999999999999]'),  # beyond int64
    (b'"price":', b'"price":1x'),  # a letter glued to a number
    (b'},{"conditions"', b'}5,{"conditions"'),  # a number between two objects (it would join the last value)
    (b'},{"conditions"', b'},5{"conditions"'),
])
def test_malformed_trades_are_loud_never_a_value(bad: tuple[bytes, bytes]) -> None:
    """One object broken in the middle of the page: every such page is a BadResponseError."""
    rows = [trade(i, np.random.default_rng(22)) for i in range(40)]
    for r in rows:
        r["conditions"], r["id"] = [12, 37], "4093"
    body = trades_body(rows)
    old, new = bad
    at = body.index(old, len(body) // 2)  # one object in the middle
    body = body[:at] + new + body[at + len(old):]
    with pytest.raises(BadResponseError):
        parse_ticks(body, "trades")


def test_quotes_with_condition_arrays_on_every_row_parse_exactly() -> None:
    rng = np.random.default_rng(23)
    rows = [{**quote(i, rng), "conditions": [[1], [], [1, 12]][i % 3]} for i in range(2000)]
    rows = [{k: r[k] for k in sorted(r)} for r in rows]  # the service's alphabetical order: conditions mid-object
    body = orjson.dumps({"results": rows, "status": "OK", "request_id": "q"})
    assert_ticks(body, "quotes")


@pytest.mark.parametrize("last", ["id", "conditions"])
def test_a_string_or_an_array_as_the_last_key_parses_exactly(last: str) -> None:
    """The closing quote or bracket of the last key's value meets the object's '}' (not a comma)."""
    rng = np.random.default_rng(24)
    rows = [trade(i, rng) for i in range(500)]
    body = trades_body([{**{k: v for k, v in r.items() if k != last}, last: r[last]} for r in rows])
    assert_ticks(body, "trades")


@pytest.mark.parametrize("path, kind", [("/futures/v1/aggs/{ticker}", "aggs"), ("/futures/v1/trades/{ticker}", "trades"),
                                        ("/futures/v1/quotes/{ticker}", "quotes")])
def test_futures_pages_take_the_same_decoder_in_every_form(path: str, kind: str) -> None:
    """The futures pages (official spec examples) decode through the same typed decoder: every form of the
    page gives the same columns, and a price sent as text is refused naming field and row."""
    from massive_feeds.rest.futures import parse_futures_aggs, parse_futures_ticks

    parse = parse_futures_aggs if kind == "aggs" else (lambda body: parse_futures_ticks(body, kind))
    spec = orjson.loads((REAL / "rest" / "futures_spec_examples.json").read_bytes())[path]
    pages = {form: parse(body).columns for form, body in every_form(orjson.dumps(spec)).items()}
    for form, cols in pages.items():
        assert cols.keys() == pages["compact"].keys()
        for name, values in cols.items():
            np.testing.assert_array_equal(values, pages["compact"][name], err_msg=f"{form} {name}")
    price = {"aggs": "open", "trades": "price", "quotes": "bid_price"}[kind]
    spec["results"][1][price] = str(spec["results"][1][price])
    with pytest.raises(BadResponseError, match=rf"got `str` - at `\$\.results\[1\]\.{price}`"):
        parse(orjson.dumps(spec))


@pytest.mark.parametrize("body", [
    # the service's answer for a range without trades: no ``results`` key at all
    b'{"ticker":"ZZZZ","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"r1"}',
    b'{"ticker":"ZZZZ","resultsCount":0,"status":"OK","results":[]}',
])
def test_an_empty_page_is_zero_bars_not_an_error(body: bytes) -> None:
    page = parse_aggs(body)
    assert page.size == 0
    assert set(page.columns) == set(AGG_FIELDS.values())


def test_high_below_low_names_the_row_and_the_low() -> None:
    rows = [{"t": T0, "o": 10.0, "h": 11.0, "l": 9.0, "c": 10.5, "v": 100.0},
            {"t": T0 + 60_000, "o": 10.0, "h": 9.5, "l": 9.75, "c": 9.6, "v": 100.0}]
    with pytest.raises(BadResponseError, match=r"h of result 1 is 9.5, below its low 'l' \(9.75\)"):
        parse_aggs(body_of(rows))
