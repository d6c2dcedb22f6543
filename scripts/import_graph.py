"""Every `protlm.X` import inside protlm, top-level and lazy (inside functions), and the cycles they make.

    .venv/bin/python scripts/import_graph.py [--edges]

Prints the import cycles (strongly connected components of the module graph): first those of top-level
imports alone (what Python runs at import time), then those that lazy imports close. `--edges` lists
every edge as `importer -> imported  (line, lazy)`. `from protlm.a import b` names the module `protlm.a.b`
when that is a module, else `protlm.a`. Exit status 0 always: a report, not a check (tests/test_layers.py
holds the rules that are enforced).
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    lazy: bool  # inside a function or class body: runs when called, not at import time


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def edges(src: Path = SRC) -> list[Edge]:
    """Every import of a protlm module by a protlm module."""
    files = {module_name(p, src): p for p in sorted((src / "protlm").rglob("*.py"))}
    modules, found = set(files), []
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top = {id(n) for n in tree.body}
        top |= {id(s) for n in tree.body if isinstance(n, (ast.If, ast.Try)) for s in ast.walk(n)}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up `level - 1`
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                resolved = _resolve(target, modules) if target.startswith("protlm") else None
                if resolved and resolved != name:
                    found.append(Edge(name, resolved, node.lineno, id(node) not in top))
    return sorted(set(found), key=lambda e: (e.importer, e.line, e.imported))


def cycles(graph_edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in graph_edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="list every import edge")
    args = ap.parse_args()
    found = edges()
    if args.edges:
        for e in found:
            print(f"{e.importer} -> {e.imported}  ({e.line}{', lazy' if e.lazy else ''})")
    top = cycles([e for e in found if not e.lazy])
    every = cycles(found)
    print(f"{len(found)} imports ({sum(e.lazy for e in found)} lazy) among protlm modules")
    print(f"cycles of top-level imports: {len(top)}")
    for c in top:
        print("  " + " <-> ".join(c))
    print(f"cycles with lazy imports too: {len(every)}")
    for c in every:
        lazy = [e for e in found if e.lazy and e.importer in c and e.imported in c]
        print("  " + " <-> ".join(c))
        for e in lazy:
            print(f"    lazy: {e.importer} -> {e.imported} (line {e.line})")


if __name__ == "__main__":
    main()
