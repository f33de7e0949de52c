"""Data Loader page: fetch historical bars (Auto / REST / Flat Files), see the quota, save datasets."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from massive_feeds.datasets import dataset_info, dataset_path, list_datasets, save_dataset
from massive_feeds.errors import MassiveError
from massive_feeds.fetch import estimate_rest_calls, fetch_data
from massive_feeds.quota import quota_status
from massive_feeds.schema import NEW_YORK, normalize_symbols, parse_date_range, parse_interval
from massive_feeds.ui import logic as L
from massive_feeds.ui.backend import Backend
from massive_feeds.ui.common import error_boundary, get_backend, render_quota, show_error, show_message

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


def _candles(df: pd.DataFrame, symbol: str, interval: str) -> Any:
    import plotly.graph_objects as go

    one = df[df["symbol"] == symbol]
    x = one["timestamp"].dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    fig = go.Figure(go.Candlestick(x=x, open=one["open"], high=one["high"], low=one["low"], close=one["close"],
                                   name=symbol))
    fig.update_layout(title=f"{symbol} · {interval} bars · New York time", xaxis_rangeslider_visible=False,
                      height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


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
    st.caption(f"{df['timestamp'].min():%Y-%m-%d %H:%M} → {df['timestamp'].max():%Y-%m-%d %H:%M} UTC · "
               f"prices {adjusted} · preview: first {min(len(df), 500):,} of {len(df):,} rows × "
               f"{len(df.columns)} columns")
    st.dataframe(df.head(500), hide_index=True, height=260)
    symbols = list(dict.fromkeys(df["symbol"]))
    chart_symbol = st.selectbox("Chart symbol", symbols, key="dl_chart_symbol") if len(symbols) > 1 else symbols[0]
    st.plotly_chart(_candles(df, chart_symbol, str(df.attrs.get("interval", ""))), key="dl_chart")
    _render_save(backend, df)


def _render_save(backend: Backend, df: pd.DataFrame) -> None:
    settings = backend.settings
    st.subheader("Save dataset")
    existing = list_datasets(settings=settings)["name"].tolist()
    append = st.toggle("Append mode: add these bars to an existing dataset (duplicates removed)", key="dl_append")
    if append and not existing:
        st.info("No saved datasets yet: save one first, then append to it.")
        return
    if append:
        name = st.selectbox("Existing dataset", existing, key="dl_append_target")
    else:
        name = st.text_input("Dataset name", value=L.suggest_dataset_name(df["symbol"].unique(),
                                                                          str(df.attrs.get("interval", "bars"))),
                             key="dl_name", help="letters, digits, '_', '-' and '.'")
    if st.button("Save dataset", key="dl_save", icon="💾"):
        with error_boundary("Saving the dataset"):
            path = dataset_path(name, settings=settings)
            before = int(dataset_info(path).get("rows", 0)) if append and path.exists() else 0
            saved = save_dataset(df, name, append=append, tags=backend.dataset_tags, settings=settings)
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


def render() -> None:
    """The whole page."""
    backend = get_backend()
    st.title("📥 Data Loader")
    quota_slot = st.empty()
    with quota_slot.container():
        render_quota(backend)

    st.selectbox("Data source", L.SOURCES, key="dl_source")
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
        st.caption(L.method_plan(method, len(symbols), window.days))
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

    with st.expander("Saved datasets"):
        table = list_datasets(settings=backend.settings)
        if table.empty:
            st.caption("None yet.")
        else:
            st.dataframe(table.drop(columns=["path"]), hide_index=True)


render()
