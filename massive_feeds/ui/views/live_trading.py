"""Live Trading page: stream quotes over WebSocket, record them, and backtest strategies on recordings.

Actions run in button callbacks (before the script reruns), so every widget below reflects the new
state; their outcome is kept in ``st.session_state`` and shown as a message. The stream itself runs
on the connector's background thread, held by the process-wide :class:`LiveSession`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from massive_feeds.datasets import load_dataset
from massive_feeds.errors import InvalidInputError
from massive_feeds.ui import logic as L
from massive_feeds.ui.backend import SPEED_ENV
from massive_feeds.ui.charts import bars_figure, live_candles, new_york_wall_clock
from massive_feeds.ui.common import (
    error_boundary,
    get_backend,
    get_live_session,
    restart_backend,
    show_error,
    show_message,
)
from massive_feeds.ui.live import LiveSession, recorded_datasets, run_backtest

REFRESH_SECONDS = 1.0
BAR_SIZES = ("1s", "5s", "15s", "1min", "5min")
CANDLE_SIZES = ("1s", "5s", "15s", "1min")
SPEEDS = (1.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MESSAGE = "lt_message"
RESULT = "lt_result"
TABS = ("📈 Live Quotes", "🧪 Test on Live Data", "🤖 Paper Trading")


def _say(msg: L.UiMessage) -> None:
    st.session_state[MESSAGE] = msg


def _on_speed() -> None:
    speed = float(st.session_state["lt_speed"])
    restart_backend({SPEED_ENV: f"{speed:g}"})
    for key in ("lt_symbols", RESULT):
        st.session_state.pop(key, None)
    _say(L.UiMessage("info", f"Sandbox clock set to {speed:g}× real time",
                     "the sandbox restarted; start trading again."))


def _on_start(live: LiveSession) -> None:
    selected = list(st.session_state.get("lt_symbols") or [])
    try:
        extra = [s for s in live.streaming_symbols if s not in selected]
        if extra:
            live.stop(extra)
        syms = live.start(selected)
        _say(L.UiMessage("success", "Streaming", ", ".join(syms)))
    except Exception as exc:  # noqa: BLE001 - told in the page
        _say(L.error_message(exc, "Starting the stream"))


def _on_stop(live: LiveSession) -> None:
    try:
        was_recording = live.is_recording
        gone = live.stop()
        text = f"stopped {', '.join(gone)}" if gone else "nothing was streaming"
        if was_recording and live.last_recording is not None:
            rec = live.last_recording
            text += f"; the recording was saved as dataset {rec.name} ({rec.bars} bars)"
            st.session_state["lt_dataset"] = rec.name
        _say(L.UiMessage("info", "Trading stopped", text))
    except Exception as exc:  # noqa: BLE001
        _say(L.error_message(exc, "Stopping the stream"))


def _on_start_recording(live: LiveSession) -> None:
    try:
        rec = live.start_recording(st.session_state.get("lt_tag") or "session", st.session_state.get("lt_bar", "1min"))
        _say(L.UiMessage("success", "Recording", f"{', '.join(rec.symbols)} to {rec.path}"))
    except Exception as exc:  # noqa: BLE001
        _say(L.error_message(exc, "Starting the recording"))


def _on_stop_recording(live: LiveSession) -> None:
    try:
        rec = live.stop_recording()
        st.session_state["lt_dataset"] = rec.name
        st.session_state["lt_all"] = False
        _say(L.UiMessage("success", f"Saved recording as dataset {rec.name}",
                         f"{rec.bars:,} bars from {rec.events:,} events of {', '.join(rec.symbols)}. "
                         "It is selected below: choose a strategy and run a backtest."))
    except Exception as exc:  # noqa: BLE001
        _say(L.error_message(exc, "Stopping the recording"))


def _price_chart(history: pd.DataFrame) -> Any:
    import plotly.express as px

    hist = history.assign(time=new_york_wall_clock(history["time"]))
    fig = px.line(hist, x="time", y="price", color="symbol", facet_row="symbol" if hist["symbol"].nunique() > 1 else None)
    fig.update_yaxes(matches=None, title=None)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=220 * max(1, hist["symbol"].nunique()), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_title="New York time", showlegend=False, title="Price (mid, else last trade)")
    return fig


def _live_panel(live: LiveSession) -> None:
    """Stats, quotes table and price chart; a fragment that refreshes itself while streaming."""
    stats = live.stats()
    cols = st.columns(4)
    for col, (label, value) in zip(cols, L.stream_stat_cards(stats).items()):
        col.metric(label, value)
    limit = stats.get("max_messages_per_minute")
    if limit is not None and stats.get("messages_this_minute", 0) > limit:
        st.caption(f"🔶 Above the plan's {limit} messages/minute: nothing is dropped here, but a capped plan may "
                   "throttle. Stream fewer symbols to stay under it.")
    if stats.get("last_error"):
        st.warning(f"Last stream error: {stats['last_error']}")
    symbols = live.streaming_symbols
    if not symbols:
        st.info("Not streaming. Choose symbols and click Start Trading.")
        return
    st.caption(("🟢 connected" if stats.get("connected") else "🟠 connecting…")
               + f" · {stats.get('messages_total', 0):,} messages received")
    quotes = live.board.quotes_frame(symbols)
    if quotes.empty:
        st.info(f"Waiting for the first quotes of {', '.join(symbols)}…")
        return
    # the quotes table at full width, the candles below it: side by side, the table's columns were cut
    st.table(L.format_quotes(quotes))
    history = live.board.history_frame(symbols)
    if history.empty:
        st.caption("Candles appear with the first prices.")
    else:
        bar = st.session_state.get("lt_candle", "5s")
        st.plotly_chart(live_candles(history, bar), key="lt_candles")
    if not history.empty:
        with st.expander("Price line (every update)"):
            st.plotly_chart(_price_chart(history), key="lt_price_chart")


def _speed(live: LiveSession) -> float:
    sb = getattr(get_backend(), "sandbox", None)
    return float(sb.clock.speed) if sb is not None else 1.0


def _needs(live: LiveSession) -> dict[str, int]:
    from massive_feeds.strategies import STRATEGIES

    return {name: L.min_bars_needed(L.strategy_params(cls)) for name, cls in STRATEGIES.items()}


def _recording_panel(live: LiveSession) -> None:
    stats = live.recording_stats()
    if stats is None or not stats["recording"]:
        return
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Elapsed", L.format_duration(stats["elapsed"]))
    c2.metric("Events recorded", f"{stats['events_received']:,}")
    c3.metric("Written to disk", f"{stats['events_durable']:,}")
    per_symbol = stats["bars_per_symbol"]
    fewest = min((per_symbol.get(s, 0) for s in stats["symbols"]), default=0)
    c4.metric(f"Bars ({stats['interval']})", f"{fewest:,}",
              help="bars so far of the symbol with the fewest (every symbol: "
                   + ", ".join(f"{s} {per_symbol.get(s, 0)}" for s in stats["symbols"]) + ")")
    c5.metric("Gaps", stats["gaps"])
    st.caption(f"🔴 Recording {', '.join(stats['symbols'])}")
    st.dataframe(pd.DataFrame(L.strategy_readiness(_needs(live), stats["interval"], fewest, _speed(live))),
                 hide_index=True, key="lt_readiness_live")


def _render_recording(live: LiveSession) -> None:
    st.subheader("Record live data")
    streaming, recording = live.is_streaming, live.is_recording
    c1, c2 = st.columns(2)
    c1.text_input("Tag", value="session", key="lt_tag", disabled=recording,
                  help="names the dataset: massive_live_<tag>_<YYYYMMDD>")
    c2.selectbox("Bar size", BAR_SIZES, index=BAR_SIZES.index("1min"), key="lt_bar", disabled=recording,
                 help="quotes and trades are resampled into bars of this size when the recording is saved")
    if recording:
        st.fragment(_recording_panel, run_every=REFRESH_SECONDS)(live)
        st.button("⏹️ Stop Recording", key="lt_stop_rec", on_click=_on_stop_recording, args=(live,), type="primary")
        return
    speed = _speed(live)
    st.caption("How long to record before each strategy can run"
               + (f" (sandbox clock at {speed:g}× real time)" if speed != 1 else " (real time)") + ":")
    st.dataframe(pd.DataFrame(L.strategy_readiness(_needs(live), st.session_state.get("lt_bar", "1min"),
                                                   None, speed)), hide_index=True, key="lt_readiness")
    st.button("▶️ Start Recording", key="lt_start_rec", on_click=_on_start_recording, args=(live,),
              disabled=not streaming)
    if not streaming:
        st.caption("Start trading first: the recording captures the symbols being streamed.")


def _render_backtest(live: LiveSession) -> None:
    from massive_feeds.strategies import STRATEGIES

    st.subheader("Test a strategy on recorded data")
    include_all = st.checkbox("Show all datasets, not only live recordings", key="lt_all")
    table = recorded_datasets(live.settings, include_all)
    if table.empty:
        st.info("No recorded datasets yet: start trading, then Start Recording and Stop Recording.")
        return
    names = table["name"].tolist()
    if st.session_state.get("lt_dataset") not in names:
        st.session_state["lt_dataset"] = names[0]
    dataset = st.selectbox("Recorded dataset", names, key="lt_dataset")
    row = table[table["name"] == dataset].iloc[0]
    span = " → ".join(f"{new_york_wall_clock([pd.Timestamp(t)])[0]:%Y-%m-%d %H:%M:%S}"
                      for t in (row["start"], row["end"]) if t)
    st.caption(f"{row['rows']:,} bars · {', '.join(row['symbols'])} · {span} New York time"
               + (f" · {row['interval']} bars" if isinstance(row["interval"], str) else "")
               + (f" · tags: {', '.join(row['tags'])}" if len(row["tags"]) else ""))
    c1, c2, c3 = st.columns(3)
    symbol = c1.selectbox("Symbol", list(row["symbols"]), key="lt_bt_symbol")
    strategy = c2.selectbox("Strategy", list(STRATEGIES), key="lt_strategy",
                            format_func=lambda n: f"{n} ({STRATEGIES[n].__name__})")
    cash = c3.number_input("Starting cash", min_value=100.0, value=100_000.0, step=1_000.0, key="lt_cash")
    fills = st.radio("Fills", ["close", "quotes"], key="lt_bt_fills", horizontal=True,
                     help="close: market orders fill at the bar price; quotes: buys at the ask, sells at the bid of "
                          "the latest quote (recordings carry quotes, fetched history does not)")
    params: dict[str, Any] = {}
    with st.expander("Strategy parameters"):
        for name, default in L.strategy_params(STRATEGIES[strategy]).items():
            params[name] = st.number_input(name, value=default, key=f"lt_p_{strategy}_{name}",
                                           step=1 if isinstance(default, int) else 0.1)
    if st.button("🚀 Run Backtest", type="primary", key="lt_run"):
        st.session_state.pop(RESULT, None)
        with error_boundary("The backtest"), st.spinner("Running the backtest…"):
            st.session_state[RESULT] = (dataset, symbol, strategy, run_backtest(live.settings, dataset, symbol,
                                                                                strategy, params, cash, fills))
    if RESULT in st.session_state:
        _render_backtest_result(*st.session_state[RESULT])


NY = "America/New_York"


def _in_new_york(frame: pd.DataFrame) -> pd.DataFrame:
    """A trade frame with its ``*_time`` columns in New York wall-clock time."""
    out = frame.copy()
    for col in (c for c in out.columns if c.endswith("_time")):
        out[col] = pd.DatetimeIndex(out[col]).tz_convert(NY).tz_localize(None)
    return out


def _render_backtest_result(dataset: str, symbol: str, strategy: str, result: Any) -> None:
    import plotly.graph_objects as go

    st.markdown(f"**{strategy}** on **{symbol}** from `{dataset}` · {result.bars:,} bars")
    cards = L.backtest_cards(result)
    cols = st.columns(len(cards))
    for col, (label, value) in zip(cols, cards.items()):
        col.metric(label, value)
    why = L.sharpe_caption(result)
    if why:
        st.caption(why)
    with error_boundary("Drawing the trades"):
        bars = load_dataset(dataset, settings=get_live_session().settings)
        bars = bars[bars["symbol"] == symbol]
        if len(bars):
            st.plotly_chart(bars_figure(bars, [symbol], trades=result.trades, open_positions=result.open_positions,
                                        title=f"{symbol} with ▲ entries and ▼ exits · New York time"),
                            key="lt_trades_chart")
    eq = result.equity
    if len(eq):  # New York time, as the price chart above and the trade log below: one zone per view
        fig = go.Figure(go.Scatter(x=eq.index.tz_convert(NY).tz_localize(None), y=eq.to_numpy(), mode="lines",
                                   name="equity"))
        fig.update_layout(title="📈 Equity curve", height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                          xaxis_title="New York time", yaxis_title="portfolio value")
        st.plotly_chart(fig, key="lt_equity")
    st.markdown("📝 **Trade log** (New York time)")
    if result.trades.empty:
        st.caption("No closed trades in this session.")
    else:
        st.dataframe(_in_new_york(result.trades), hide_index=True)
    if result.open_trades:
        st.caption(f"{result.open_trades} open at the end (hollow ▲ on the chart; its value is in the return):")
        st.dataframe(_in_new_york(result.open_positions), hide_index=True, key="lt_open_positions")


# --- paper trading ---------------------------------------------------------------------------------------
def _on_paper_start(live: LiveSession, params: dict[str, Any]) -> None:
    from massive_feeds.ui.live import PaperRun

    try:
        if live.paper is not None and live.paper.running:
            raise InvalidInputError("A paper session is running already: stop it first.")
        run = PaperRun(live.settings, live.recordings_dir, st.session_state["lt_pp_strategy"],
                       st.session_state["lt_pp_symbol"], params, fills=st.session_state.get("lt_pp_fills", "close"),
                       cash=float(st.session_state.get("lt_pp_cash", 100_000.0)),
                       backfill_bars=int(st.session_state.get("lt_pp_backfill", 100)))
        live.paper = run.start()
        _say(L.UiMessage("success", "Paper trading", f"{run.strategy} on {run.symbol}, fills at the {run.fills}"))
    except Exception as exc:  # noqa: BLE001 - told in the page
        _say(L.error_message(exc, "Starting paper trading"))


def _on_paper_stop(live: LiveSession) -> None:
    if live.paper is not None:
        live.paper.stop()
        _say(L.UiMessage("info", "Stopping after the next bar",
                         "then the session is saved, replayed for parity and backtested"))


def _paper_chart(bars: pd.DataFrame, fills: list[Any], title: str) -> Any:
    import plotly.graph_objects as go

    def naive(ts: Any) -> Any:
        return new_york_wall_clock(ts)

    fig = go.Figure(go.Scatter(x=naive(bars["time"]), y=bars["close"], mode="lines", name="close",
                               line={"color": "#444", "width": 1}))
    for side, marker, colour in (("buy", "triangle-up", "green"), ("sell", "triangle-down", "red")):
        pts = [f for f in fills if f.side == side]
        if pts:
            fig.add_trace(go.Scatter(x=naive([f.fill_time for f in pts]), y=[f.fill_price for f in pts],
                                     mode="markers", name="entry" if side == "buy" else "exit",
                                     marker={"symbol": marker, "size": 11, "color": colour}))
    fig.update_layout(title=title, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="New York time", yaxis_title="price")
    return fig


def _fills_table(fills: list[Any]) -> pd.DataFrame:
    """The paper session's orders with their times in New York wall-clock time (the chart's zone)."""
    table = pd.DataFrame([f.as_dict() for f in fills])
    for col in ("created", "fill_time"):
        table[col] = new_york_wall_clock(pd.to_datetime(table[col], utc=True))
    return table


def _paper_panel(live: LiveSession) -> None:
    """The running (or finished) session: metrics, the price with fills, the fills table; then the parity
    result beside the saved session's backtest. A fragment refreshing itself while the session runs."""
    run = live.paper
    if run is None:
        return
    if not run.running and st.session_state.pop("lt_pp_refresh", False):
        st.rerun(scope="app")  # finished: redraw the whole tab (buttons enabled, this fragment no longer ticking)
    snap, bars, fills = run.view()
    if run.running:
        st.caption(f"🟢 Paper trading {run.strategy} on {run.symbol} (fills at the {run.fills})"
                   + (" · stopping after the next bar…" if run.stopping else ""))
    if snap is None:
        if run.running:
            st.info("Waiting for the first bar (REST backfill, then the stream)…")
    else:
        cols = [*st.columns(3), *st.columns(3)]  # two rows: six metrics side by side truncate the amounts
        for col, (label, value) in zip(cols, {
                "Position": f"{snap.position:g}", "Open orders": str(snap.open_orders), "Fills": str(len(fills)),
                "Cash": f"{snap.cash:,.2f}", "Equity": f"{snap.equity:,.2f}",
                "Last bar": f"{new_york_wall_clock([snap.time])[0]:%H:%M} {snap.status}"}.items()):
            col.metric(label, value)
        st.plotly_chart(_paper_chart(bars, fills, f"{run.symbol} · ▲ entries ▼ exits"), key="lt_pp_chart")
        if fills:
            st.markdown("**Fills** (New York time, as the chart)")
            st.dataframe(_fills_table(fills), hide_index=True, key="lt_pp_fills_table")
    if run.running:
        return
    if run.error is not None:
        show_error(run.error, "The paper session")
        return
    result = run.result
    if result is None:
        return
    st.success(f"Saved the session as dataset {result.dataset} ({result.bars} bars)")
    left, right = st.columns(2)
    with left:
        st.markdown("**Paper session (live)**")
        st.metric("Final equity", f"{result.equity_final:,.2f}")
        st.metric("Orders", str(len(result.orders)))
        parity = result.parity
        if parity is not None and parity.identical:
            st.success("Replay parity: identical — the saved session replayed through the same feed path gave "
                       "the same orders, fills and final equity")
        elif parity is not None:
            st.error(f"Replay parity: {len(parity.differences)} difference(s)")
            st.code("\n".join(parity.differences), language=None)
    with right:
        st.markdown("**Backtest of the recorded session**")
        bt_result = run.backtest
        if bt_result is not None:
            st.metric("Final equity", f"{bt_result.end_value:,.2f}")
            st.metric("Closed trades", str(bt_result.trade_count))
            st.caption(str(bt_result))
    if len(result.trades):
        st.dataframe(result.trades, hide_index=True, key="lt_pp_trades")


def _render_paper(live: LiveSession, available: list[str]) -> None:
    from massive_feeds.strategies import STRATEGIES

    st.subheader("Paper trading: a strategy on the live stream")
    running = live.paper is not None and live.paper.running
    c1, c2, c3 = st.columns(3)
    symbols = sorted(set(available) | {"AAPL"})
    c1.selectbox("Symbol", symbols, index=symbols.index("AAPL"), key="lt_pp_symbol", disabled=running,
                 accept_new_options=True)
    strategy = c2.selectbox("Strategy", list(STRATEGIES), key="lt_pp_strategy", disabled=running,
                            format_func=lambda n: f"{n} ({STRATEGIES[n].__name__})")
    c3.radio("Fills", ["close", "quotes"], key="lt_pp_fills", horizontal=True, disabled=running,
             help="close: market orders fill at the signal bar's close; quotes: buys at the ask, sells at the bid")
    c4, c5 = st.columns(2)
    c4.number_input("Starting cash", min_value=100.0, value=100_000.0, step=1_000.0, key="lt_pp_cash",
                    disabled=running)
    c5.number_input("Backfill bars", min_value=0, value=100, step=10, key="lt_pp_backfill", disabled=running,
                    help="1-minute bars of REST history the strategy sees before the stream")
    params: dict[str, Any] = {}
    with st.expander("Strategy parameters"):
        for name, default in L.strategy_params(STRATEGIES[strategy]).items():
            params[name] = st.number_input(name, value=default, key=f"lt_pp_p_{strategy}_{name}", disabled=running,
                                           step=1 if isinstance(default, int) else 0.1)
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("▶️ Start Trading", type="primary", key="lt_pp_start", on_click=_on_paper_start, args=(live, params),
              disabled=running)
    b2.button("⏹️ Stop", key="lt_pp_stop", on_click=_on_paper_stop, args=(live,), disabled=not running)
    st.session_state["lt_pp_refresh"] = running
    st.fragment(_paper_panel, run_every=REFRESH_SECONDS if running else None)(live)


def render() -> None:
    """The whole page."""
    backend = get_backend()
    live = get_live_session()
    st.title("📡 Live Trading")
    c1, c2 = st.columns(2)
    c1.selectbox("Data Source", ["massive"], key="lt_source")
    c2.radio("Connection mode", ["Streaming (WebSocket)"], key="lt_mode", horizontal=True)

    listing = live.symbol_list()  # never fails: fetched, else cached, else a built-in list
    available = listing.symbols
    streaming = live.streaming_symbols
    options = sorted(set(available) | set(streaming) | set(st.session_state.get("lt_symbols") or []))
    if "lt_symbols" not in st.session_state:
        st.session_state["lt_symbols"] = streaming or L.default_stream_symbols(available)
    max_streams = live.settings.plan.ws_max_streams
    st.multiselect("Symbols", options, key="lt_symbols", max_selections=max_streams, accept_new_options=True,
                   help=f"pick from the list or type any symbol and press Enter; your plan streams up to "
                        f"{max_streams or 'unlimited'} symbols at once")
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("▶️ Start Trading", type="primary", key="lt_start", on_click=_on_start, args=(live,),
              disabled=not st.session_state.get("lt_symbols"))
    b2.button("⏹️ Stop Trading", key="lt_stop", on_click=_on_stop, args=(live,), disabled=not streaming)
    with st.container():  # always present, so the tabs below keep their place (and their selection)
        message = st.session_state.pop(MESSAGE, None)
        if message is None:  # one message at a time: an action's outcome, else where the symbols come from
            message = L.symbol_list_message(listing.source, listing.problem, listing.fetched_at)
        if message is not None:
            show_message(message)
    st.caption("WebSocket streaming does not count against the REST quota"
               + (" · sandbox market (synthetic prices)" if backend.is_sandbox else ""))
    c1, c2 = st.columns(2)
    c1.selectbox("Live candle size", CANDLE_SIZES, index=CANDLE_SIZES.index("5s"), key="lt_candle")
    if backend.is_sandbox and backend.sandbox is not None:
        current = float(backend.sandbox.clock.speed)
        speeds = sorted(set(SPEEDS) | {current})
        c2.selectbox("Sandbox clock speed (× real time)", speeds, index=speeds.index(current), key="lt_speed",
                     format_func=lambda v: f"{v:g}×", on_change=_on_speed,
                     help="how fast the sandbox market runs: at 60×, a minute bar forms every second. Changing "
                          "it restarts the sandbox (streams and a running recording stop).")

    # Stateful tabs: the open tab survives reruns, and only its content runs (the hidden one does not refresh).
    quotes_tab, test_tab, paper_tab = st.tabs(list(TABS), key="lt_tab", on_change="rerun")
    with paper_tab:
        if paper_tab.open is not False:
            try:
                _render_paper(live, available)
            except Exception as exc:  # noqa: BLE001 - never a traceback in the page
                show_error(exc, "The Paper Trading tab")
    with quotes_tab:
        if quotes_tab.open is not False:
            st.fragment(_live_panel, run_every=REFRESH_SECONDS if streaming else None)(live)
    with test_tab:
        if test_tab.open is False:
            return
        try:
            _render_recording(live)
            st.divider()
            _render_backtest(live)
        except Exception as exc:  # noqa: BLE001 - never a traceback in the page
            show_error(exc, "The Test on Live Data tab")


render()
