"""The package's import graph, from the source (AST, nothing imported), and its layering check.

    python scripts/import_graph.py            # Mermaid graph of the packages and top-level modules
    python scripts/import_graph.py --modules  # one node per module
    python scripts/import_graph.py --dot      # Graphviz DOT instead of Mermaid
    python scripts/import_graph.py --check    # exit 1 if a module imports a higher layer or a cycle exists
    python scripts/import_graph.py --write    # rewrite CONTRIBUTING.md's layer table and graph

Every import counts, including the ones inside functions (imported late for
speed, they are dependencies all the same). ``tests/test_layers.py`` runs the
check, so an upward import fails the test suite. CONTRIBUTING.md's layer table
and graph are this script's output (``--write``, between the ``MARKERS``);
``tests/test_layers.py`` fails when they differ from what it would write.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "axolotl_mipo"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
CONTRIBUTING = ROOT.parent / "CONTRIBUTING.md"
MARKERS = ("<!-- layers: written by `python scripts/import_graph.py --write`; do not edit by hand -->",
           "<!-- layers: end -->")

# Lowest first. A module may import its own layer or a lower one, never a higher one. A package listed
# here covers all its modules; a new module outside these must be given a layer (the check says so).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors and version compatibility", ("errors", "compat")),
    ("loss options and input rows", ("loss_options", "data")),
    ("math: losses, scoring, memory estimates", ("losses", "scoring", "memory")),
    ("generation", ("generation",)),
    ("pairing", ("pairing",)),
    ("config: the mipo: block, checked against what rows, presets and strategies declare", ("args",)),
    ("pipeline: rows -> pairs -> DPO dataset", ("pipeline",)),
    ("trainer", ("collator", "trainer", "reference")),
    ("evaluation", ("evaluation",)),
    ("POPI summarizer training (its own plugin)", ("popi",)),
    ("testing helpers, model preparation", ("testing", "_doubles", "smollm2")),
    ("rounds: runs Axolotl (train, merge-lora) and axolotl-mipo generate as subprocesses", ("rounds",)),
    ("entry points", ("plugin", "cli", "axolotl_cli", "__init__")),
]

# What each layer holds, for CONTRIBUTING.md's table (keyed by the layer's title in LAYERS).
WHAT = {
    "errors and version compatibility": "the exception types; every difference between the tested Axolotl / TRL "
    "versions (`compat`), detected by feature, not by version number",
    "loss options and input rows": "the loss options, declared once (`loss_options.MIPOTrainingArgsMixin`); "
    "input rows: `example`, `files` (shared readers), `rows` (loading, the context/query split), `presets/` "
    "(published dataset schemas, one module per family), `prompts`",
    "math: losses, scoring, memory estimates": "pure loss math; log-probs of responses and the pointwise MI; "
    "the GPU memory estimate",
    "generation": "backends (`hf`, `vllm`, `openai`), their `SamplingSettings`, the cache, the loop that fills "
    "it, the hand-off of GPU memory to training",
    "pairing": "pairing strategies, the registry, the derangement",
    "config: the mipo: block, checked against what rows, presets and strategies declare": "the `mipo:` block "
    "(`args`): its pydantic models, one prompt-format model shared with POPI, and the checks derived from what "
    "the presets and the strategies declare",
    "pipeline: rows -> pairs -> DPO dataset": "rows -> generation -> pairs -> DPO rows: `builder`, `summary` "
    "(POPI), `diagnostics` (rows per rejected prompt), `build_rows`",
    "trainer": "the DPO trainer with the RMiPO / PerCE loss hooks, its batches (`collator`) and the reference "
    "data it precomputes and caches once (`reference`)",
    "evaluation": "evaluation of a trained model: figures (`evaluate`, `metrics`, `judge`), statistics over "
    "seeds and rows (`stats`), reports (`report`)",
    "POPI summarizer training (its own plugin)": "POPI's trained summarizer (arXiv 2510.17881): GRPO on "
    "preference summaries, its own Axolotl plugin, args, data and reward",
    "testing helpers, model preparation": "`testing/`: the kit for strategy authors (below); `_doubles/`: this "
    "project's internal test doubles (the vLLM stand-in); `smollm2`: SmolLM2-135M-Instruct as an offline "
    "model for the CPU demo and proofs",
    "rounds: runs Axolotl (train, merge-lora) and axolotl-mipo generate as subprocesses": "iterated MIPO "
    "(`rounds`): round k generates with round k-1's merged model, trains and merges a new adapter; resumable",
    "entry points": "the Axolotl plugin, the `axolotl-mipo` command and the package's exports",
}


# top-level folders of the repository that are not in the wheel: they may import the package, never the reverse
OUTSIDE = {"experiments": "the studies and their task generators"}


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


def imports_of(path: Path, packages: tuple[str, ...] = (PACKAGE,)) -> set[str]:
    """The modules of ``packages`` a file imports (``from pkg import mod`` counts as ``pkg.mod`` when it is one)."""
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
    return {m for m in found if any(m == p or m.startswith(p + ".") for p in packages)} - {module}


def _module_path(module: str) -> Path | None:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    for p in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if p.is_file():
            return p
    return None


def graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` for every module of the package."""
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def forbidden_imports() -> list[str]:
    """One line per package module importing a top-level package that the wheel does not hold (:data:`OUTSIDE`)."""
    return [f"{module_name(p)} imports {m}, which is not installed with the package ({OUTSIDE[m.split('.')[0]]})"
            for p in sorted(ROOT.rglob("*.py")) for m in sorted(imports_of(p, tuple(OUTSIDE)))]


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


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle: the strongly connected components of more than one module (or a module importing
    itself), each sorted, found by Tarjan's algorithm without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for t in targets:
                if t not in g:
                    continue
                if t not in index:
                    index[t] = low[t] = len(index)
                    stack.append(t)
                    on_stack.add(t)
                    work.append((t, iter(sorted(g[t]))))
                    break
                if t in on_stack:
                    low[node] = min(low[node], index[t])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1 or node in g[node]:
                        out.append(sorted(comp))
    return sorted(out)


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


def table() -> str:
    """CONTRIBUTING.md's layer table: each layer's members (``pkg/`` for a package) and what it holds."""
    lines = ["| layer | modules | what |", "|---|---|---|"]
    for i, (title, members) in enumerate(LAYERS):
        names = [f"`{m}/`" if (ROOT / m).is_dir() else f"`{m}`" for m in members if m != "__init__"]
        if "__init__" in members:
            names.append(f"`{PACKAGE}` itself")
        lines.append(f"| {i} | {', '.join(names)} | {WHAT.get(title, title)} |")
    return "\n".join(lines)


def contributing_section() -> str:
    """What ``--write`` puts between the ``MARKERS`` in CONTRIBUTING.md: the table, then the graph."""
    return "\n".join([MARKERS[0], table(), "", "```mermaid", mermaid(collapsed(graph(), False)), "```", MARKERS[1]])


def written_section(text: str) -> str:
    """The section of ``text`` between the ``MARKERS``, markers included (an error when they are missing)."""
    start, end = text.find(MARKERS[0]), text.find(MARKERS[1])
    if start < 0 or end < start:
        raise ValueError(f"{CONTRIBUTING.name} lacks the markers {MARKERS}: put them where the layer table goes")
    return text[start:end + len(MARKERS[1])]


def write_contributing(path: Path = CONTRIBUTING) -> bool:
    """Rewrite the section between the markers; ``True`` when the file changed."""
    text = path.read_text(encoding="utf-8")
    new = text.replace(written_section(text), contributing_section(), 1)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", action="store_true", help="one node per module instead of per package")
    ap.add_argument("--dot", action="store_true", help="Graphviz DOT instead of Mermaid")
    ap.add_argument("--check", action="store_true", help="only check the layering")
    ap.add_argument("--write", action="store_true", help=f"rewrite the layer table and graph in {CONTRIBUTING.name}")
    a = ap.parse_args(argv)
    if a.write:
        changed = write_contributing()
        print(f"{CONTRIBUTING.name}: {'layer table and graph rewritten' if changed else 'already up to date'}")
        return 0
    g = graph()
    if a.check:
        bad = violations(g) + forbidden_imports() + [f"import cycle: {' -> '.join(c)}" for c in cycles(g)]
        print("\n".join(bad) if bad else f"layering ok: {len(g)} modules, no import of a higher layer, no cycle")
        return 1 if bad else 0
    g = collapsed(g, a.modules)
    print(dot(g) if a.dot else mermaid(g))
    return 0


if __name__ == "__main__":
    sys.exit(main())
