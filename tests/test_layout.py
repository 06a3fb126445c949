"""The layering rule: engine/ imports no Qt and nothing of the app (raclate_app imports engine, never the reverse)."""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"
FORBIDDEN = ("PySide6", "pyqtgraph", "raclate_app")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_engine_imports_no_qt_and_no_app():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 40
    offending = {str(p.relative_to(ENGINE.parent)): sorted(m for m in imported_modules(p) if m.split(".")[0] in FORBIDDEN)
                 for p in files}
    assert {k: v for k, v in offending.items() if v} == {}


# -- the import graph inside engine/ ---------------------------------------------------------------
def module_name(path: Path) -> str:
    parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_imports(path: Path, modules: set[str]) -> set[str]:
    """Engine modules ``path`` imports anywhere in the file (inside functions too): ``from engine.x
    import y`` counts as ``engine.x.y`` when that is a module, else as ``engine.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def engine_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ENGINE.rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        # A package's parents are imported before it by Python itself: only count real edges.
        graph[name] = {m for m in engine_imports(path, modules) if m != name and not name.startswith(m + ".")}
        graph[name] -= {"engine"}   # `import engine` only loads the BLAS (engine/__init__ imports nothing else eagerly)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_engine():
    graph = engine_graph()
    assert len(graph) > 40 and "engine.tasks" in graph
    assert cycles(graph) == []


def test_only_the_cli_imports_the_commands():
    """engine/commands/* are argument parsers over the library: only engine/cli.py (and the commands
    package itself) may import them; the app, the library and the benchmarks never do."""
    root = ENGINE.parent
    offending = []
    for folder in ("engine", "raclate_app", "benchmarks", "packaging"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel == "engine/cli.py" or rel.startswith("engine/commands/"):
                continue
            if any(m == "engine.commands" or m.startswith("engine.commands.") for m in imported_modules(path)):
                offending.append(rel)
    assert offending == []


def test_ground_floor_imports_nothing_above_it():
    """errors, tasks, files, run_record, events and defaults are the ground floor: everything may import
    them, they import no other engine module but each other."""
    ground = {"engine.errors", "engine.tasks", "engine.files", "engine.run_record", "engine.events",
              "engine.defaults", "engine.backend"}
    graph = engine_graph()
    assert {m: sorted(graph[m] - ground) for m in ground if graph[m] - ground} == {}
