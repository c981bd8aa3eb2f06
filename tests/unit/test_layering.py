"""The islab package is a library below the family scripts: no import cycle between its modules,
and no module imports, runs or path-loads a file of the family folders (DR-IS/, DL-noise/,
DL-correlation/, Convex-Noise/, benchmarks/) or the repository tooling beside it (reporting/,
islab_scripts/).  Read from the source with ast (nothing is imported), so the check is fast and
sees imports inside functions too; the last two tests run the checker on a made-up package to
show it finds what it should."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # tests/unit/ -> the repository
FAMILIES = ("DR-IS", "DL-noise", "DL-correlation", "Convex-Noise", "benchmarks")
OUTSIDE = ("reporting", "islab_scripts")   # top-level packages above islab: islab never imports them
# calls that load or run code from a file or a module name; allowed only where named
LOADERS = {"spec_from_file_location", "module_from_spec", "exec_module", "run_path", "run_module",
           "import_module", "SourceFileLoader", "exec", "execfile", "__import__"}
ALLOWED_LOADERS = {"loader.py": {"spec_from_file_location", "module_from_spec", "exec_module"},
                   "__init__.py": {"import_module"}}   # islab/__init__.py: the lazy public API (islab.dris)
FAMILY_FILE = re.compile(r"(?:^|/)(?:%s)/[^/\s]+\.py\b" % "|".join(re.escape(f) for f in FAMILIES))


def _docstrings(tree) -> set[int]:
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body:
            first = n.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def scan(pkg: Path) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the package's modules it imports, problems) for the flat package folder `pkg`.
    An edge is any import of a sibling module (top level or inside a function) and any
    sys.modules lookup of one by name (a dependency that hides from the import statements)."""
    name = pkg.name
    modules = {p.stem for p in pkg.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    problems: list[str] = []
    for path in sorted(pkg.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        me, deps = path.stem, set()
        docs = _docstrings(tree)
        for n in ast.walk(tree):
            targets = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                targets = [n.module] + [f"{n.module}.{a.name}" for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.level > 0:
                targets = [f"{name}.{n.module}" if n.module else name] + \
                          [f"{name}.{n.module + '.' if n.module else ''}{a.name}" for a in n.names]
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
                if re.fullmatch(rf"{name}\.\w+", n.value):   # sys.modules.get("islab.runs"), ...
                    targets = [n.value]
                if FAMILY_FILE.search(n.value):
                    problems.append(f"{path.name}:{n.lineno}: names a family script: {n.value!r}")
            elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
                for side in (n.left, n.right):
                    if isinstance(side, ast.Constant) and side.value in FAMILIES:
                        problems.append(f"{path.name}:{n.lineno}: joins a path with the family folder {side.value!r}")
            elif isinstance(n, ast.Call):
                f = n.func
                called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
                if called in LOADERS and called not in ALLOWED_LOADERS.get(path.name, set()):
                    problems.append(f"{path.name}:{n.lineno}: loads code by name or path ({called})")
            for t in targets:
                top = t.split(".")[0]
                if top in OUTSIDE or top in FAMILIES:
                    problems.append(f"{path.name}:{n.lineno}: imports {t} (outside the library)")
                parts = t.split(".")
                if parts[0] == name and len(parts) > 1 and parts[1] in modules and parts[1] != me:
                    deps.add(parts[1])
        graph[me] = deps
    return graph, problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_islab_has_no_import_cycle():
    graph, _ = scan(ROOT / "islab")
    assert len(graph) > 20 and "runs" in graph["proxies"]   # the scan sees the package's imports
    assert cycles(graph) == []


def test_islab_loads_no_family_script_and_imports_nothing_above_it():
    _, problems = scan(ROOT / "islab")
    assert problems == []


def test_the_checker_finds_a_cycle_and_a_family_script(tmp_path):
    pkg = tmp_path / "islab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from islab import b\n")
    (pkg / "b.py").write_text("def f():\n    from islab.c import x\n")
    (pkg / "c.py").write_text("import sys\nA = sys.modules.get('islab.a')\n")
    (pkg / "d.py").write_text("import importlib.util, runpy\nfrom pathlib import Path\n"
                              "def g(repo):\n"
                              "    runpy.run_path(str(repo / 'DR-IS' / 'static.py'))\n"
                              "    return importlib.util.spec_from_file_location('s', 'DL-noise/is.py')\n")
    (pkg / "e.py").write_text("from reporting import tables\n")
    graph, problems = scan(pkg)
    assert cycles(graph) == [["a", "b", "c"]]
    assert any("run_path" in p for p in problems) and any("spec_from_file_location" in p for p in problems)
    assert any("'DR-IS'" in p for p in problems) and any("DL-noise/is.py" in p for p in problems)
    assert any("imports reporting" in p for p in problems)


def test_the_checker_passes_a_layered_package(tmp_path):
    pkg = tmp_path / "islab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Mentions DR-IS/static.py in a docstring only."""\n')
    (pkg / "a.py").write_text("from islab import b\nSTYLE = {'DR-IS': 1}\n")
    (pkg / "b.py").write_text("import os\n")
    graph, problems = scan(pkg)
    assert graph == {"__init__": set(), "a": {"b"}, "b": set()} and cycles(graph) == [] and problems == []
