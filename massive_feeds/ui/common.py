"""Streamlit glue shared by the pages: the cached backend and live session, messages, the quota panel."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

import streamlit as st

from ..quota import quota_status
from .backend import Backend, config_fingerprint, resolve_backend
from .live import LiveSession
from .logic import UiMessage, error_message, flatfile_quota_label, profile_caption, quota_badge, rest_minute_label

log = logging.getLogger(__name__)


def _close(resource: Any) -> None:
    try:
        resource.close()
    except Exception as exc:  # noqa: BLE001 - releasing must not fail the app
        log.warning("closing %r: %s", resource, exc)


@st.cache_resource(show_spinner="Connecting to the data source (the local sandbox starts when no API key is set)…",
                   on_release=_close)
def _backend(fingerprint: str) -> Backend:
    return resolve_backend()


def get_backend() -> Backend:
    """The process-wide backend (started once, kept across reruns and sessions)."""
    return _backend(config_fingerprint())


@st.cache_resource(show_spinner=False, on_release=_close)
def _live_session(fingerprint: str) -> LiveSession:
    backend = get_backend()
    return LiveSession(backend.settings, backend.recordings_dir, tags=backend.dataset_tags)


def get_live_session() -> LiveSession:
    """The process-wide live session: one connection per market and key, shared by every browser tab."""
    return _live_session(config_fingerprint())


def restart_backend(env: dict[str, str]) -> None:
    """Apply ``env`` (e.g. a new sandbox clock speed) and start over: the live session and the backend
    (with its sandbox) are released — closed — and rebuilt on the next run."""
    import os

    _live_session.clear()  # releases (closes) the cached session: streams and a recording stop
    _backend.clear()  # releases the backend: its sandbox stops
    os.environ.update(env)


def show_message(msg: UiMessage) -> None:
    """Render a :class:`UiMessage` as the matching Streamlit box (plus its hint as a caption)."""
    {"success": st.success, "info": st.info, "warning": st.warning, "error": st.error}[msg.kind](msg.text)
    if msg.hint:
        st.caption(msg.hint)


def show_error(exc: BaseException, action: str = "") -> None:
    """An exception as a clear message in the page (the traceback only goes to the server log)."""
    if not isinstance(exc, Exception):
        raise exc
    log.info("%s failed", action or "action", exc_info=exc)
    show_message(error_message(exc, action))


@contextmanager
def error_boundary(action: str = "") -> Iterator[None]:
    """Run a block; any error becomes an in-page message instead of a traceback."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure is shown, none crashes the page
        show_error(exc, action)  # st.rerun/st.stop raise BaseException subclasses, which pass through


def render_quota(backend: Backend) -> None:
    """The quota status of the active profile: REST calls left (coloured by the rule), per-minute use,
    flat-file bytes left, and whose numbers these are (the profile's, beside Massive's documented ones)."""
    try:
        status = quota_status(backend.settings)
    except Exception as exc:  # noqa: BLE001 - the panel must never break the page
        show_error(exc, "Reading the quota")
        return
    badge = quota_badge(status)
    with st.container(border=True):
        st.markdown(f"**Quota** · profile `{status.plan}`")
        st.markdown(badge.markdown)
        st.caption(rest_minute_label(status))
        st.markdown(f"📦 {flatfile_quota_label(status)}")
        st.caption(profile_caption(backend.settings.plan))
