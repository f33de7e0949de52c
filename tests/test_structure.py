"""The house's shape, read from the code's own imports: arrows run one way (down), no import circles.

Every ``import`` of the package counts, also the ones inside functions (a deferred import is still a
dependency); ``if TYPE_CHECKING:`` blocks are skipped (they never run). Layers, top to bottom, in the order of
the architecture note (``docs/structure.md`` describes each)::

    faces        cli/ ui/ and the package root (which re-exports; its get_connector hands the recorder in)
    strategies   strategies/: the built-in strategies, their runners and validation (on both adapters)
    adapters     backtrader/ vectorbt/
    fetch        fetch.py, ticks.py, futures.py: the public fetch functions; source.py: the Source shape and choose()
    services     store/ (above flat files), record/ (above stream), datasets, quality
    flat files   flatfiles/: the S3 day files, read with their splits applied
    corrections  splits, dividends: the corporate-action lists, applied on read
    transport    rest/ stream/
    kernels      sessions, quota, buckets, layout, runtime (the runtime context: the one owner of process state,
                 and its lazy sandbox import, the one arrow into sandbox/, which sits beside the house), cache
    base         schema, futures_symbols, tickschema, config, errors, storage, redact, inflate, _optional, _version
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "massive_feeds"

LAYERS = {
    "faces": ("cli", "ui", "__init__", "__main__"),
    "strategies": ("strategies",),
    "adapters": ("backtrader", "vectorbt"),
    "fetch": ("fetch", "ticks", "futures", "source"),
    "services": ("store", "record", "datasets", "quality"),
    "flat files": ("flatfiles",),
    "corrections": ("splits", "dividends"),
    "transport": ("rest", "stream"),
    "kernels": ("sessions", "quota", "buckets", "layout", "runtime", "cache"),
    "base": ("schema", "futures_symbols", "tickschema", "config", "errors", "storage", "redact", "inflate",
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


def test_the_layers_keep_the_architecture_notes_order() -> None:
    """Not one flat "sources" layer: the store sits above the flat files it ingests, recording above the stream it
    records, the Source choice above every source, and the adapters above the choice."""
    assert RANK["store"] > RANK["flatfiles"] > RANK["splits"] > RANK["rest"]
    assert RANK["record"] > RANK["stream"]
    assert RANK["source"] > RANK["store"] and RANK["source"] > RANK["flatfiles"] and RANK["source"] > RANK["rest"]
    assert RANK["backtrader"] > RANK["fetch"] and RANK["cli"] > RANK["backtrader"]


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


def test_the_connectors_recorder_is_handed_in_by_its_caller() -> None:
    """stream/ never imports record/ and no upper module patches a class: a bare connector's enable_recording is
    a one-line error naming the fix; the package root's get_connector hands the recorder in."""
    import subprocess
    import sys

    script = "\n".join([
        "import massive_feeds.stream as s",
        "from massive_feeds.config import load_settings",
        "from massive_feeds.errors import InvalidInputError",
        "c = s.MassiveConnector(settings=load_settings(environ={}, api_key='k'))",
        "try:",
        "    c.enable_recording(['AAPL'])",
        "except InvalidInputError as exc:",
        "    print('refused:', exc)",
        "c.close()",
        "import massive_feeds",
        "g = massive_feeds.get_connector(settings=c.settings, shared=False)",
        "print('recorder:', g.recorder.__name__)",
        "g.close()",
        "print('class attribute:', hasattr(s.MassiveConnector, 'recorder_factory'))",
    ])
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MASSIVE_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                         cwd=PACKAGE.parent, check=True).stdout.splitlines()
    assert out == ["refused: enable_recording needs a recorder: MassiveConnector(recorder=WebSocketDataRecorder) "
                   "(massive_feeds.get_connector passes it) or enable_recording(recorder=...)",
                   "recorder: WebSocketDataRecorder", "class attribute: False"]


def test_the_store_gets_its_feed_class_from_above_and_ingest_is_a_function_of_the_store() -> None:
    from massive_feeds.backtrader import MassiveData, MassiveStore
    from massive_feeds.store import HistoryStore, ingest

    assert MassiveStore.DataCls is MassiveData  # Backtrader's own registration idiom (IBStore.DataCls)
    assert not hasattr(HistoryStore, "ingest_fn") and not hasattr(HistoryStore, "ingest")
    assert "store" in __import__("inspect").signature(ingest).parameters  # ingest(dataset, …, store=HistoryStore)


# --- the strategies ship under the project's namespace (issue 28) -------------------------------------------
def test_the_wheel_ships_the_strategies_as_massive_feeds_strategies_only() -> None:
    import tomllib

    from setuptools import find_packages

    root = PACKAGE.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = find_packages(str(root), include=include)
    assert "massive_feeds.strategies" in shipped
    assert not [p for p in shipped if p.split(".")[0] == "strategies"]  # before: a top-level `strategies`


def test_the_repository_strategies_folder_is_the_same_modules() -> None:
    import massive_feeds.strategies as pkg
    import massive_feeds.strategies.runner as runner
    import massive_feeds.strategies.validation as validation
    import strategies
    import strategies.runner
    from strategies.validation import validate

    assert strategies.SmaCross is pkg.SmaCross and strategies.STRATEGIES is pkg.STRATEGIES
    assert strategies.runner is runner and validate is validation.validate  # one module object, not a copy


def test_a_user_folder_named_strategies_does_not_shadow_ours(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "__init__.py").write_text("MINE = True\n")  # the user's own package
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{PACKAGE.parent}"}
    code = "import strategies; from massive_feeds.strategies import SmaCross, run_strategy; print(strategies.MINE)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
