"""The Streamlit app (optional extra ``massive-feeds[ui]``): the Data Loader and Live Trading pages.

Start it with ``massive-feeds ui`` (or ``streamlit run`` on :data:`APP_PATH`). Layout:

* :mod:`.logic` — page rules without Streamlit (quota colours, method explanations, messages);
* :mod:`.backend` — the real service or, with no key, the sandbox the app starts itself;
* :mod:`.live` — the stream, the quote board, the recorder and backtests, without Streamlit;
* :mod:`.common`, :mod:`.app`, :mod:`.views` — the Streamlit pages.

Importing this package does not import Streamlit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Sequence

from ..errors import ConfigurationError

APP_PATH = Path(__file__).resolve().parent / "app.py"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def streamlit_available() -> bool:
    """Whether the ``ui`` extra (Streamlit) is installed."""
    return importlib.util.find_spec("streamlit") is not None


def streamlit_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, extra: Sequence[str] = (),
                      python: str | None = None) -> list[str]:
    """The ``python -m streamlit run`` command line for the app: headless (no browser opened, no
    e-mail prompt), no usage statistics sent, no file watcher, no tracebacks shown to users."""
    return [
        python or sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        f"--server.address={host}", f"--server.port={int(port)}",
        "--server.headless=true", "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none", "--client.showErrorDetails=none",
        "--client.toolbarMode=minimal",
        *extra,
    ]


def require_streamlit() -> None:
    """Raise a :class:`ConfigurationError` that says how to install the extra when Streamlit is missing."""
    if not streamlit_available():
        raise ConfigurationError("The UI needs Streamlit: pip install 'massive-feeds[ui]'")


__all__ = ["APP_PATH", "DEFAULT_HOST", "DEFAULT_PORT", "require_streamlit", "streamlit_available",
           "streamlit_command"]
