"""The package's layering: no module imports a higher layer (scripts/import_graph.py draws and checks it)."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ig():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.fast
def test_no_module_imports_a_higher_layer(ig):
    g = ig.graph()
    assert "axolotl_mipo.trainer" in g and "axolotl_mipo.losses" in g["axolotl_mipo.trainer"]
    assert ig.violations(g) == []


@pytest.mark.fast
def test_no_package_module_imports_the_experiments(ig, tmp_path, monkeypatch):
    """experiments/ (not in the wheel) may import axolotl_mipo; an installed module importing it would break."""
    assert ig.forbidden_imports() == []
    pkg = tmp_path / "axolotl_mipo"
    (pkg / "evaluation").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "evaluation" / "__init__.py").write_text("")
    (pkg / "evaluation" / "evaluate.py").write_text("def f():\n    from experiments.tasks import synthetic\n")
    monkeypatch.setattr(ig, "ROOT", pkg)
    assert ig.forbidden_imports() == ["axolotl_mipo.evaluation.evaluate imports experiments.tasks, which is not "
                                      "installed with the package (the studies and their task generators)"]


@pytest.mark.fast
def test_the_check_sees_an_upward_import_and_an_unplaced_module(ig):
    g = {"axolotl_mipo.pipeline.summary": {"axolotl_mipo.evaluation.metrics"}, "axolotl_mipo.newthing": set()}
    bad = ig.violations(g)
    assert any("pipeline.summary" in b and "higher layer" in b for b in bad)
    assert any("newthing has no layer" in b for b in bad)


@pytest.mark.fast
def test_function_level_and_relative_imports_count(ig, tmp_path, monkeypatch):
    pkg = tmp_path / "axolotl_mipo"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "evaluation.py").write_text("")
    (pkg / "data" / "rows.py").write_text("def f():\n    from .. import evaluation\n")
    monkeypatch.setattr(ig, "ROOT", pkg)
    assert ig.graph()["axolotl_mipo.data.rows"] == {"axolotl_mipo", "axolotl_mipo.evaluation"}
    assert any("data.rows" in b for b in ig.violations(ig.graph()))


def test_every_test_module_name_is_unique_or_in_a_package():
    """Test folders are packages (tests/<folder>/__init__.py), so two test_base.py files do not clash."""
    for d in (REPO / "tests").rglob("*"):
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("test_*.py")):
            assert (d / "__init__.py").is_file(), f"{d} holds tests but is not a package"


# tests that cross modules sit at the top of tests/ without a module of their own
CROSS_CUTTING = {"test_fuzz", "test_safety", "test_e2e", "test_strategy_ecosystem", "test_layers", "test_gpu_check",
                 "test_docs"}


@pytest.mark.fast
def test_tests_mirror_the_package():
    """tests/<package>/test_<module>.py tests axolotl_mipo/<package>/<module>.py (or <module>/__init__.py);
    tests/test_<module>.py a top-level module, or is one of the cross-cutting files; tests/scripts/test_<name>.py
    tests scripts/<name>.py; tests/experiments/<path>/test_<name>.py tests experiments/<path>/<name>.py."""
    pkg = REPO / "axolotl_mipo"
    for f in sorted((REPO / "tests").rglob("test_*.py")):
        rel = f.relative_to(REPO / "tests")
        module = rel.stem[len("test_"):]
        if len(rel.parts) == 1 and rel.stem in CROSS_CUTTING:
            continue
        if rel.parts[0] in ("scripts", "experiments"):  # tests/scripts/test_x.py tests scripts/x.py, and so on
            target = REPO.joinpath(*rel.parts[:-1], module + ".py")
            assert target.is_file(), f"tests/{rel} mirrors nothing ({target.relative_to(REPO)} does not exist)"
            continue
        target = pkg.joinpath(*rel.parts[:-1], module + ".py")
        if not target.is_file():  # test_<package>.py tests the package's __init__ (its registry, its public API)
            target = pkg.joinpath(*rel.parts[:-1], module, "__init__.py")
        assert target.is_file(), f"tests/{rel} mirrors no module ({target.relative_to(REPO)} does not exist)"


@pytest.mark.fast
def test_no_import_cycle(ig):
    """No module imports, even inside a function, a module that imports it back (directly or through others)."""
    assert ig.cycles(ig.graph()) == []


@pytest.mark.fast
def test_the_cycle_check_sees_direct_indirect_and_self_cycles(ig):
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"g"}, "g": {"f"}, "h": {"a"}}
    assert ig.cycles(g) == [["a", "b", "c"], ["e"], ["f", "g"]]
    assert ig.cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


# ------------------------------------------------ CONTRIBUTING.md's layer table and graph


@pytest.mark.fast
def test_contributing_shows_the_layers_the_script_writes(ig):
    """CONTRIBUTING.md's layer table and graph are ``import_graph.py --write``'s output, so they cannot drift."""
    written = ig.written_section(ig.CONTRIBUTING.read_text(encoding="utf-8"))
    assert written == ig.contributing_section(), (
        "CONTRIBUTING.md's layer table or graph differs from the source: run python scripts/import_graph.py --write")
    assert set(ig.WHAT) == {title for title, _ in ig.LAYERS}, "each layer in LAYERS needs its WHAT entry"
    for member in ("compat", "popi/", "smollm2", "reference", "testing/"):
        assert f"`{member}`" in ig.table(), member


@pytest.mark.fast
def test_write_replaces_only_the_section_between_the_markers(ig, tmp_path):
    path = tmp_path / "CONTRIBUTING.md"
    path.write_text(f"# Intro\n\n{ig.MARKERS[0]}\n| stale | table |\n{ig.MARKERS[1]}\n\n## After\n", encoding="utf-8")
    assert ig.write_contributing(path) is True
    text = path.read_text(encoding="utf-8")
    assert text == f"# Intro\n\n{ig.contributing_section()}\n\n## After\n"
    assert ig.write_contributing(path) is False
    path.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks the markers"):
        ig.write_contributing(path)
