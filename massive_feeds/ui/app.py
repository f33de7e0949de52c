"""Streamlit entry point: ``massive-feeds ui`` (or ``streamlit run massive_feeds/ui/app.py``).

Two pages, :mod:`views.data_loader` and :mod:`views.live_trading`, under a common frame: the
sandbox/no-key banner and where the data comes from. The backend is resolved once per process
(``st.cache_resource``); with no key configured it is the local sandbox, started here.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from massive_feeds.ui.common import get_backend, show_error, show_message

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="Massive feeds", page_icon="📈", layout="wide")

try:
    backend = get_backend()
except Exception as exc:  # noqa: BLE001 - a bad configuration is told, not thrown
    st.title("Massive feeds")
    show_error(exc, "Starting the app")
    st.stop()

banner = backend.banner()
if banner is not None:
    show_message(banner)
st.sidebar.caption(backend.describe())

page = st.navigation([
    st.Page(VIEWS / "data_loader.py", title="Data Loader", icon="📥", default=True),
    st.Page(VIEWS / "live_trading.py", title="Live Trading", icon="📡"),
])
page.run()
