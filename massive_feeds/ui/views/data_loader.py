"""Data Loader page: fetch historical bars (Auto / REST / Flat Files), see the quota, chart and download
the result, save it; inspect, download and delete saved datasets."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Literal

import pandas as pd
import streamlit as st

from massive_feeds.datasets import (
    dataset_info,
    dataset_path,
    delete_dataset,
    list_datasets,
    load_dataset,
    save_dataset,
)
from massive_feeds.errors import MassiveError
from massive_feeds.fetch import estimate_rest_calls, fetch_data
from massive_feeds.quota import quota_status
from massive_feeds.schema import normalize_symbols, parse_date_range, parse_interval
from massive_feeds.sessions import has_sessions
from massive_feeds.ui import logic as L
from massive_feeds.ui.backend import Backend
from massive_feeds.ui.charts import bars_figure
from massive_feeds.ui.common import (
    error_boundary,
    get_backend,
    render_quota,
    show_error,
    show_message,
)

RESULT = "dl_result"
SAVED = "dl_saved"


def _fetch_with_progress(backend: Backend, symbols: list[str], start: date, end: date, interval: str,
                         method: str, adjusted: bool, session: str) -> pd.DataFrame:
    """Run ``fetch_data`` on a worker thread while a status box shows progress (REST calls made so far
    against the estimate, elapsed time); the page stays responsive and errors propagate."""
    settings = backend.settings
    window = parse_date_range(start, end)
    estimate = estimate_rest_calls(len(symbols), parse_interval(interval), window, session)
    used_before = quota_status(settings).rest_used_today
    status = st.status(f"Fetching {len(symbols)} symbol(s) over {window.days} day(s)…", expanded=True)
    bar = status.progress(0.02, text="Choosing the method…")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ui-fetch")
    try:
        future = pool.submit(fetch_data, symbols, start, end, interval, method,  # type: ignore[arg-type]
                             adjusted=adjusted, session=session, settings=settings, progress=False)
        t0 = time.monotonic()
        while True:
            try:
                df = future.result(timeout=0.25)
                break
            except TimeoutError:
                elapsed = time.monotonic() - t0
                calls = quota_status(settings).rest_used_today - used_before
                frac = max(min(calls / max(estimate, 1), 0.95), min(0.9, elapsed / (elapsed + 5)))
                bar.progress(max(frac, 0.05), text=f"Downloading… {elapsed:.0f}s elapsed, {calls} REST call(s) so far")
            except BaseException:
                status.update(label="Fetch failed", state="error", expanded=False)
                raise
    finally:
        pool.shutdown(wait=False)
    bar.progress(1.0, text="Done")
    status.update(label=f"Fetched {len(df):,} rows", state="complete", expanded=False)
    return df


def _chart(df: pd.DataFrame, key: str, interval: str) -> None:
    """Candlesticks with volume (stacked per symbol) or closes overlaid, without the closed hours."""
    symbols = list(dict.fromkeys(df["symbol"]))
    chosen = symbols
    layout: Literal["stacked", "overlay"] = "stacked"
    if len(symbols) > 1:
        c1, c2 = st.columns([3, 2])
        chosen = c1.multiselect("Chart symbols", symbols, default=symbols[: min(len(symbols), 3)],
                                key=f"{key}_symbols") or symbols[:1]
        label = c2.radio("Layout", ["Stacked candles", "Overlaid (% change)"], key=f"{key}_layout", horizontal=True)
        layout = "overlay" if label.startswith("Overlaid") else "stacked"
    part = df[df["symbol"].isin(chosen)]
    hidden = " (closed hours and days hidden)" if all(has_sessions(c) for c in chosen) else ""
    title = f"{', '.join(chosen)} · {interval} bars · New York time{hidden}"
    st.plotly_chart(bars_figure(part, chosen, layout=layout, interval=interval, title=title), key=f"{key}_chart")


def _downloads(df: pd.DataFrame, stem: str, key: str) -> None:
    """CSV and Parquet download buttons for a bar frame."""
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button("⬇️ CSV", df.to_csv(index=False).encode(), file_name=f"{stem}.csv", mime="text/csv",
                       key=f"{key}_csv")
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, write_page_checksum=True)  # the reader can check it (see storage.py)
    c2.download_button("⬇️ Parquet", buf.getvalue(), file_name=f"{stem}.parquet",
                       mime="application/vnd.apache.parquet", key=f"{key}_parquet")


def _render_result(backend: Backend, df: pd.DataFrame) -> None:
    st.subheader("Result")
    show_message(L.method_used_message(df.attrs))
    empty = df.attrs.get("empty_symbols") or []
    if empty:
        st.warning(f"No bars for {', '.join(empty)} in this range (unknown ticker, or no trades).")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Rows", f"{len(df):,}")
    c2.metric("Symbols", df["symbol"].nunique() if len(df) else 0)
    c3.metric("Interval", str(df.attrs.get("interval", "–")))
    c4.metric("Method", L.METHOD_NAMES.get(str(df.attrs.get("method")), "–"))
    if df.empty:
        st.info("The query returned no bars.")
        return
    adjusted = "split-adjusted" if df.attrs.get("adjusted") else "as traded (unadjusted)"
    # New York time, as the chart below: one zone per view (downloads keep UTC, the schema's zone)
    st.caption(f"{L.new_york_span(df['timestamp'])} · "
               f"prices {adjusted} · preview: first {min(len(df), 500):,} of {len(df):,} rows × "
               f"{len(df.columns)} columns")
    st.dataframe(L.in_new_york(df.head(500)), hide_index=True, height=260)
    interval = str(df.attrs.get("interval", ""))
    _chart(df, "dl_chart", interval)
    _downloads(df, L.suggest_dataset_name(df["symbol"].unique(), interval or "bars"), "dl_download")
    _render_save(backend, df)


def _render_save(backend: Backend, df: pd.DataFrame) -> None:
    settings = backend.settings
    st.subheader("Save dataset")
    existing = list_datasets(settings=settings)["name"].tolist()
    append = st.toggle("Append mode: add these bars to an existing dataset (duplicates removed)", key="dl_append")
    if append and not existing:
        st.info("No saved datasets yet: save one first, then append to it.")
        return
    overwrite = False
    name: str | None
    if append:
        # no default: appending to the wrong dataset is the costly mistake, so the user picks it
        name = st.selectbox("Existing dataset to append to", existing, index=None, key="dl_append_target",
                            placeholder="Pick a dataset…")
        if name is not None:
            st.caption(f"**{name}** holds {_describe(dataset_info(dataset_path(name, settings=settings)))}; "
                       f"these rows: {_describe_frame(df)}.")
    else:
        name = st.text_input("Dataset name", value=L.suggest_dataset_name(df["symbol"].unique(),
                                                                          str(df.attrs.get("interval", "bars"))),
                             key="dl_name", help="letters, digits, '_', '-' and '.'")
        if name in existing:
            overwrite = st.checkbox(f"Replace the existing dataset {name} "
                                    f"({_describe(dataset_info(dataset_path(name, settings=settings)))})",
                                    key="dl_overwrite")
    if st.button("Save dataset", key="dl_save", icon="💾", disabled=not name):
        with error_boundary("Saving the dataset"):
            assert name is not None  # the button is disabled without one
            path = dataset_path(name, settings=settings)
            before = int(dataset_info(path).get("rows", 0)) if append and path.exists() else 0
            saved = save_dataset(df, name, append=append, overwrite=overwrite, tags=backend.dataset_tags,
                                 settings=settings)
            rows = int(dataset_info(saved).get("rows", len(df)))
            if append:
                dupes = before + len(df) - rows
                msg = (f"Appended to dataset **{saved.stem}**: {rows - before:,} new row(s), {dupes:,} duplicate(s) "
                       f"skipped; it now holds {rows:,} rows.")
            else:
                msg = f"Saved dataset **{saved.stem}** ({rows:,} rows) to `{saved}`."
            st.session_state[SAVED] = msg
    if st.session_state.get(SAVED):
        st.success(st.session_state[SAVED])


def _describe(info: dict) -> str:
    """``'1h bars · stocks · 1,218 rows'`` or ``'trades/quotes (ticks) · …'`` for a dataset's metadata."""
    from massive_feeds.schema import asset_class

    interval = info.get("interval")
    kind = "trades/quotes (ticks)" if interval == "ticks" else f"{interval or 'unknown-interval'} bars"
    classes = ", ".join(sorted({asset_class(str(s)) for s in info.get("symbols") or ()})) or "no symbols"
    return f"{kind} · {classes} · {int(info.get('rows') or 0):,} rows"


def _describe_frame(df: pd.DataFrame) -> str:
    return _describe({"interval": df.attrs.get("interval"), "symbols": list(pd.unique(df["symbol"])),
                      "rows": len(df)})


def render() -> None:
    """The whole page."""
    backend = get_backend()
    st.title("📥 Data Loader")
    quota_slot = st.empty()
    with quota_slot.container():
        render_quota(backend)

    st.selectbox("Data source", [L.source_label(backend.settings.plan)], key="dl_source")
    label = st.radio("Fetch method", list(L.METHOD_LABELS), key="dl_method", horizontal=True)
    method = L.METHOD_LABELS[label]
    st.caption(L.METHOD_HELP[method])
    st.markdown(L.AUTO_RULE)

    default_start, default_end = L.default_date_range(backend.today())
    c1, c2, c3, c4 = st.columns([3, 2, 2, 1])
    symbols_text = c1.text_input("Symbols", value=L.DEFAULT_SYMBOLS, key="dl_symbols",
                                 help="Comma-separated: stocks (AAPL), crypto (X:BTCUSD or BTC-USD), forex "
                                      "(C:EURUSD or EUR/USD), indices (I:SPX), options (O:…)")
    start = c2.date_input("Start date", value=default_start, key="dl_start")
    end = c3.date_input("End date", value=default_end, key="dl_end")
    interval = c4.selectbox("Interval", L.INTERVALS, index=L.INTERVALS.index(L.DEFAULT_INTERVAL), key="dl_interval")
    with st.expander("Options"):
        adjusted = st.checkbox("Split-adjusted prices", value=True, key="dl_adjusted",
                               help="Massive's default. Unticked: prices as traded. Dividends are never adjusted.")
        regular = st.checkbox("Regular session only (09:30–16:00 New York)", value=False, key="dl_regular")

    symbols: list[str] = []
    try:
        symbols = normalize_symbols(symbols_text)
        window = parse_date_range(start, end)
        calls = estimate_rest_calls(len(symbols), parse_interval(interval), window,
                                    "regular" if regular else "extended")
        st.caption(L.method_plan(method, len(symbols), window.days,
                                 quota_status(backend.settings).rest_remaining_today, calls))
        ready = True
    except MassiveError as exc:
        show_error(exc, "Checking the query")
        ready = False

    if st.button("Fetch Data", type="primary", disabled=not ready, key="dl_fetch", icon="⬇️"):
        st.session_state.pop(RESULT, None)
        st.session_state.pop(SAVED, None)
        with error_boundary("Fetching"):
            st.session_state[RESULT] = _fetch_with_progress(
                backend, symbols, start, end, interval, method, adjusted, "regular" if regular else "extended")
        with quota_slot.container():  # the fetch used quota: show the new figures
            render_quota(backend)

    result = st.session_state.get(RESULT)
    if result is not None:
        _render_result(backend, result)

    _render_saved(backend)


def _render_saved(backend: Backend) -> None:
    """Saved datasets: the table, then one of them inspected, downloaded or deleted."""
    st.subheader("Saved datasets")
    settings = backend.settings
    deleted = st.session_state.pop("dl_deleted", None)
    if deleted:
        st.success(deleted)
    table = list_datasets(settings=settings)
    if table.empty:
        st.caption("None yet: fetch bars and click Save dataset.")
        return
    st.dataframe(table.drop(columns=["path"]), hide_index=True, key="dl_datasets_table")
    name = st.selectbox("Inspect dataset", table["name"].tolist(), key="dl_inspect")
    with error_boundary("Reading the dataset"):
        info = dataset_info(dataset_path(name, settings=settings))
        df = load_dataset(name, settings=settings)
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Rows", f"{len(df):,}")
        c2.metric("Symbols", df["symbol"].nunique() if "symbol" in df else 0)
        c3.metric("Interval", str(info.get("interval") or "–"))
        c4.metric("Source", str(info.get("source") or "–"))
        if len(df) and "timestamp" in df:
            st.caption(L.new_york_span(df["timestamp"])
                       + (f" · tags: {', '.join(info.get('tags') or [])}" if info.get("tags") else "")
                       + f" · `{info.get('path')}`")
            st.dataframe(L.in_new_york(df.head(200)), hide_index=True, height=200, key="dl_inspect_rows")
            if {"open", "high", "low", "close", "volume"} <= set(df.columns):
                _chart(df, "dl_inspect_chart", str(info.get("interval") or ""))
        _downloads(df, name, "dl_inspect_download")
    with st.popover("🗑️ Delete dataset…"):
        st.markdown(f"Delete **{name}** for good" + (" (and its recorded events)" if info.get("recording") else "")
                    + "?")
        if st.button(f"Delete {name}", key="dl_delete", type="primary"):
            with error_boundary("Deleting the dataset"):
                removed = delete_dataset(name, settings=settings)
                st.session_state["dl_deleted"] = (f"Deleted dataset **{name}** "
                                                  f"({', '.join(p.name for p in removed)}).")
                st.session_state.pop("dl_inspect", None)
                st.rerun()


render()
