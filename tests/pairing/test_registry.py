"""The strategy registry: built-ins, entry points, module:object paths, and its refusals."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap

import pytest

from axolotl_mipo.errors import MIPOStrategyError
from axolotl_mipo.pairing import (
    PairingStrategy,
    available_strategies,
    get_strategy,
    register_strategy,
    registry,
)
from axolotl_mipo.pairing.strategies import DropContext, MismatchedPrompt
from axolotl_mipo.testing.pairing_checks import (
    check_strategy_invariants,
)
from axolotl_mipo.testing.pairing_rows import EchoStrategy, rows

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])




class _FakeEntryPoint:
    def __init__(self, name, obj, group=registry.ENTRY_POINT_GROUP):
        self.name, self.group, self.value, self._obj, self.loaded = name, group, f"fake:{name}", obj, False

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        self.loaded = True
        return self._obj


def test_builtins_are_available(clean_registry):
    assert {"drop_context", "swap_context", "mismatched_prompt"} <= set(available_strategies())
    assert isinstance(get_strategy("drop_context"), DropContext)
    assert isinstance(get_strategy(" mismatched_prompt "), MismatchedPrompt)


def test_unknown_name_lists_available_and_imports_nothing(clean_registry, monkeypatch):
    def no_import(*a, **kw):
        raise AssertionError("a bare unknown name must not import anything")

    monkeypatch.setattr(importlib, "import_module", no_import)
    with pytest.raises(MIPOStrategyError) as e:
        get_strategy("some_package.Strategy")
    msg = str(e.value)
    assert "unknown pairing strategy 'some_package.Strategy'" in msg
    assert "drop_context" in msg and "swap_context" in msg and "mismatched_prompt" in msg
    assert "'some_package:Strategy'" in msg
    with pytest.raises(MIPOStrategyError, match="did you mean 'drop_context'"):
        get_strategy("drop_contxt")


def test_register_refuses_duplicates_and_bad_classes(clean_registry):
    register_strategy(EchoStrategy)
    register_strategy(EchoStrategy)  # the same class again is harmless (e.g. a re-imported module)

    class Other(EchoStrategy):
        name = "echo_test"

    with pytest.raises(MIPOStrategyError, match="already taken"):
        register_strategy(Other)

    class Nameless(EchoStrategy):
        name = ""

    class Colon(EchoStrategy):
        name = "a:b"

    for cls in (Nameless, Colon):
        with pytest.raises(MIPOStrategyError, match="name"):
            register_strategy(cls)
    with pytest.raises(MIPOStrategyError, match="not a PairingStrategy subclass"):
        register_strategy(dict)
    with pytest.raises(MIPOStrategyError, match="abstract"):
        register_strategy(PairingStrategy)
    assert get_strategy("echo_test", flip=True).flip is True
    with pytest.raises(MIPOStrategyError, match="does not accept the options.*'flop'.*accepts flip"):
        get_strategy("echo_test", flop=True)


def test_entry_point_is_loaded_only_when_its_name_matches(clean_registry, monkeypatch):
    wanted = _FakeEntryPoint("echo_ep", EchoStrategy)
    broken = _FakeEntryPoint("other_ep", RuntimeError("must not be loaded"))
    foreign = _FakeEntryPoint("echo_ep", RuntimeError("other group"), group="something.else")
    calls = []

    def entry_points(**kw):
        calls.append(kw)
        return [broken, wanted, foreign]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert "echo_ep" in available_strategies() and "other_ep" in available_strategies()
    assert not wanted.loaded
    strategy = get_strategy("echo_ep", flip=True)
    assert isinstance(strategy, EchoStrategy) and strategy.flip and wanted.loaded
    assert all(kw == {"group": "axolotl_mipo.pairing"} for kw in calls)
    # built-in names win without touching entry points' code
    assert isinstance(get_strategy("drop_context"), DropContext)
    with pytest.raises(MIPOStrategyError, match="could not load entry point 'other_ep'"):
        get_strategy("other_ep")


def test_entry_point_must_be_a_strategy_class(clean_registry, monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [_FakeEntryPoint("bad_ep", lambda: None)])
    with pytest.raises(MIPOStrategyError, match="entry point 'bad_ep'.*not a PairingStrategy subclass"):
        get_strategy("bad_ep")


def test_module_object_path(clean_registry, tmp_path, monkeypatch):
    (tmp_path / "mipo_ext_strategy.py").write_text(textwrap.dedent("""
        from axolotl_mipo.pairing import GenRequest, Pair, PairingStrategy

        class Outer:
            class Inner(PairingStrategy):
                needs_context = False

                def requests(self, examples, seed):
                    return [GenRequest(i, c) for i in range(len(examples)) for c in (None, "c")]

                def pair(self, examples, responses, seed):
                    return [Pair(i, None, GenRequest(i, "c"), GenRequest(i, None)) for i in range(len(examples))]

        NOT_A_CLASS = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mipo_ext_strategy", raising=False)
    strategy = get_strategy("mipo_ext_strategy:Outer.Inner")
    assert type(strategy).__qualname__ == "Outer.Inner"
    assert strategy.name == "mipo_ext_strategy:Outer.Inner"  # an unnamed class records the path it came from
    check_strategy_invariants(strategy, rows(5), 0)
    with pytest.raises(MIPOStrategyError, match="not a PairingStrategy subclass"):
        get_strategy("mipo_ext_strategy:NOT_A_CLASS")
    with pytest.raises(MIPOStrategyError, match="has no attribute 'Missing'"):
        get_strategy("mipo_ext_strategy:Missing")
    with pytest.raises(MIPOStrategyError, match="cannot import module 'no_such_module_xyz'"):
        get_strategy("no_such_module_xyz:Thing")
    with pytest.raises(MIPOStrategyError, match="not a valid module:object path"):
        get_strategy("mipo_ext_strategy:")


def test_strategy_class_resolves_what_get_strategy_builds_without_building_it(clean_registry, monkeypatch):
    from axolotl_mipo.pairing.registry import strategy_class

    built = []
    monkeypatch.setattr(DropContext, "__init__", lambda self, **kw: built.append(kw))
    assert strategy_class(" drop_context ") is DropContext and built == []
    assert strategy_class("mismatched_prompt").prompt_only and not DropContext.prompt_only
    with pytest.raises(MIPOStrategyError, match="unknown pairing strategy 'dorp_context'.*did you mean"):
        strategy_class("dorp_context")
