"""The house's shape, read from the code's own imports: arrows run one way (down), no import circles.

Every ``import`` of the package counts, also the ones inside functions (a deferred import is still a
dependency); ``if TYPE_CHECKING:`` blocks are skipped (they never run). Layers, top to bottom (see
``docs/structure.md``)::

    adapters   backtrader/ vectorbt/ ui/ cli/ (and the package root, which re-exports)
    fetch      fetch.py, ticks.py, futures.py
    sources    rest-backed and file-backed sources: splits, datasets, quality, stream/, flatfiles/,
               store/, record/
    transport  rest/
    kernels    sessions, quota, buckets, layout, runtime (the runtime context; its lazy sandbox import is
               the one arrow into sandbox/, which sits beside the house and is not read here)
    base       schema, futures_symbols, tickschema, config, cache, errors, storage, redact, inflate, _optional,
               _version
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "massive_feeds"

LAYERS = {
    "adapters": ("backtrader", "vectorbt", "ui", "cli", "__init__", "__main__"),
    "fetch": ("fetch", "ticks", "futures", "source"),
    "sources": ("splits", "datasets", "quality", "stream", "flatfiles", "store", "record"),
    "transport": ("rest",),
    "kernels": ("sessions", "quota", "buckets", "layout", "runtime"),
    "base": ("schema", "futures_symbols", "tickschema", "config", "cache", "errors", "storage", "redact", "inflate",
             "_optional", "_version"),
}
RANK = {top: rank for rank, names in enumerate(reversed(LAYERS.values())) for top in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (resolved to files: a submodule, or a package's ``__init__``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(base: str, names: list[str]) -> None:
        for alias in names:
            if f"{base}.{alias}" in modules:  # ``from . import events``: the submodule itself
                found.add(f"{base}.{alias}")
            elif base in modules:
                found.add(base)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                if base.split(".")[0] == "massive_feeds":
                    resolve(base, [a.name for a in child.names])
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name in modules:
                        found.add(alias.name)
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


@lru_cache(maxsize=1)
def _graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.relative_to(PACKAGE).parts]
    names = {_module_name(p): p for p in files}
    # a package is addressed by its name: map massive_feeds.stream -> massive_feeds.stream.__init__
    modules = {n.removesuffix(".__init__") for n in names}
    graph = {n.removesuffix(".__init__"): _imports(p, modules) for n, p in names.items()}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_import_graph_is_read() -> None:
    graph = _graph()
    # a few arrows every version of the house has: the reader must see them, or the checks below are empty
    assert "massive_feeds.schema" in graph["massive_feeds.fetch"]
    assert "massive_feeds.backtrader.store" in graph["massive_feeds.backtrader.feed"]
    assert "massive_feeds.errors" in graph["massive_feeds.schema"]


def test_no_import_circles() -> None:
    assert _cycles(_graph()) == []


def test_cycle_finder_sees_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(_graph()))
def test_arrows_run_down(module: str) -> None:
    graph = _graph()
    top = _top(module)
    assert top in RANK, f"{module}: place its top-level module in LAYERS (docs/structure.md)"
    upward = sorted(dep for dep in graph[module] if RANK[_top(dep)] > RANK[top])
    assert upward == [], f"{module} imports a higher layer"


def test_the_stream_layer_never_imports_recording() -> None:
    graph = _graph()
    stream = [m for m in graph if _top(m) == "stream"]
    assert stream and not [m for m in stream if any(_top(d) == "record" for d in graph[m])]


def test_recording_attaches_to_the_connector_from_above() -> None:
    """stream/ never imports record/: the recorder registers itself; the package root's get_connector loads it,
    and without it enable_recording is a one-line error, not an AttributeError or a silent no-op."""
    import subprocess
    import sys

    script = "\n".join([
        "import massive_feeds.stream as s",
        "from massive_feeds.config import load_settings",
        "from massive_feeds.errors import InvalidInputError",
        "assert s.MassiveConnector.recorder_factory is None",
        "c = s.MassiveConnector(settings=load_settings(environ={}, api_key='k'))",
        "try:",
        "    c.enable_recording(['AAPL'])",
        "except InvalidInputError as exc:",
        "    print('refused:', exc)",
        "c.close()",
        "import massive_feeds",
        "massive_feeds.get_connector",
        "print('factory:', s.MassiveConnector.recorder_factory.__name__)",
    ])
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MASSIVE_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                         cwd=PACKAGE.parent, check=True).stdout.splitlines()
    assert out == ["refused: recording is not loaded: import massive_feeds.record (massive_feeds.get_connector "
                   "loads it) before enable_recording", "factory: WebSocketDataRecorder"]


def test_the_store_gets_its_feed_class_and_its_ingest_from_above() -> None:
    from massive_feeds.backtrader import MassiveData, MassiveStore
    from massive_feeds.store import HistoryStore, ingest

    assert MassiveStore.DataCls is MassiveData
    assert HistoryStore.ingest_fn is ingest
