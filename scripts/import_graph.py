"""The package's import graph, from the source (AST, nothing imported), and its layering check.

    python scripts/import_graph.py            # Mermaid graph of the packages and top-level modules
    python scripts/import_graph.py --modules  # one node per module
    python scripts/import_graph.py --dot      # Graphviz DOT instead of Mermaid
    python scripts/import_graph.py --check    # exit 1 if a module imports a higher layer

Every import counts, including the ones inside functions (imported late for
speed, they are dependencies all the same). ``tests/test_layers.py`` runs the
check, so an upward import fails the test suite.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "axolotl_mipo"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Lowest first. A module may import its own layer or a lower one, never a higher one. A package listed
# here covers all its modules; a new module outside these must be given a layer (the check says so).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors and version compatibility", ("errors", "compat")),
    ("config and input rows", ("args", "data")),
    ("math: losses, scoring, memory estimates", ("losses", "scoring", "memory")),
    ("generation", ("generation",)),
    ("pairing", ("pairing",)),
    ("pipeline: rows -> pairs -> DPO dataset", ("pipeline",)),
    ("trainer", ("collator", "trainer")),
    ("evaluation", ("evaluation",)),
    ("POPI summarizer training (its own plugin)", ("popi",)),
    ("testing helpers, model preparation", ("testing", "smollm2")),
    ("entry points", ("plugin", "cli", "axolotl_cli", "__init__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(module: str) -> int | None:
    """Layer index of ``axolotl_mipo.x.y`` (``None``: not placed in :data:`LAYERS`)."""
    rest = module.split(".")[1:] or ["__init__"]
    for i, (_, members) in enumerate(LAYERS):
        if rest[0] in members:
            return i
    return None


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path) -> set[str]:
    """The ``axolotl_mipo`` modules a file imports (``from pkg import mod`` counts as ``pkg.mod`` when it is one)."""
    module = module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            if target is None:
                continue
            found.add(target)
            for a in node.names:
                sub = f"{target}.{a.name}"
                if _module_path(sub) is not None:
                    found.add(sub)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")} - {module}


def _module_path(module: str) -> Path | None:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    for p in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if p.is_file():
            return p
    return None


def graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` for every module of the package."""
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def violations(g: dict[str, set[str]]) -> list[str]:
    """One line per upward import, and per module without a layer."""
    out = []
    for src, targets in sorted(g.items()):
        ls = layer_of(src)
        if ls is None:
            out.append(f"{src} has no layer: add it to LAYERS in scripts/import_graph.py")
            continue
        for dst in sorted(targets):
            ld = layer_of(dst)
            if ld is not None and ld > ls:
                out.append(f"{src} ({LAYERS[ls][0]}) imports {dst} ({LAYERS[ld][0]}), a higher layer")
    return out


def _node(module: str, by_module: bool) -> str:
    rest = module.split(".")[1:]
    if not rest:
        return PACKAGE
    return ".".join(rest) if by_module else rest[0]


def collapsed(g: dict[str, set[str]], by_module: bool) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for src, targets in g.items():
        s = _node(src, by_module)
        out.setdefault(s, set()).update(t for t in (_node(d, by_module) for d in targets) if t != s)
    return out


def mermaid(g: dict[str, set[str]]) -> str:
    """Top-down: each layer a subgraph, an arrow from the importer to what it imports (always downward)."""
    ids = {n: n.replace(".", "_") for n in g}
    lines = ["graph TD"]
    for i, (title, _) in reversed(list(enumerate(LAYERS))):
        members = sorted(n for n in g if layer_of(f"{PACKAGE}.{n}" if n != PACKAGE else PACKAGE) == i)
        if members:
            lines.append(f'  subgraph L{i}["{i}. {title}"]')
            lines += [f'    {ids[n]}["{n}"]' for n in members]
            lines.append("  end")
    lines += [f"  {ids[s]} --> {ids[t]}" for s in sorted(g) for t in sorted(g[s])]
    return "\n".join(lines)


def dot(g: dict[str, set[str]]) -> str:
    lines = ["digraph axolotl_mipo {", "  rankdir=TB;"]
    lines += [f'  "{s}" -> "{t}";' for s in sorted(g) for t in sorted(g[s])]
    return "\n".join(lines + ["}"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", action="store_true", help="one node per module instead of per package")
    ap.add_argument("--dot", action="store_true", help="Graphviz DOT instead of Mermaid")
    ap.add_argument("--check", action="store_true", help="only check the layering")
    a = ap.parse_args(argv)
    g = graph()
    if a.check:
        bad = violations(g)
        print("\n".join(bad) if bad else f"layering ok: {len(g)} modules, no import of a higher layer")
        return 1 if bad else 0
    g = collapsed(g, a.modules)
    print(dot(g) if a.dot else mermaid(g))
    return 0


if __name__ == "__main__":
    sys.exit(main())
