"""Finding a pairing strategy by the name written in the YAML (``mipo.strategy``).

:func:`get_strategy` resolves a name in this order:

1. the built-in registry (classes decorated with :func:`register_strategy`);
2. the entry points of group ``axolotl_mipo.pairing`` that other installed
   packages declare, e.g. in their ``pyproject.toml``::

       [project.entry-points."axolotl_mipo.pairing"]
       my_strategy = "my_package.pairing:MyStrategy"

   Only the entry point whose name matches is loaded; other packages' code is
   never imported to answer for a name that is not theirs;
3. a ``module:object`` path (``my_package.pairing:MyStrategy``), imported only
   when the name contains ``':'``. A bare name that is neither registered nor
   an entry point imports nothing and is an error.

Whatever is loaded must be a concrete subclass of
:class:`~axolotl_mipo.pairing.base.PairingStrategy`. Options
(``mipo.strategy_kwargs``) are checked against the class's ``__init__``
before it is called, so a misspelled option is a :class:`MIPOStrategyError`
that lists the accepted ones.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
from typing import Any, TypeVar

from axolotl_mipo.errors import MIPOStrategyError
from axolotl_mipo.pairing.base import PairingStrategy

__all__ = ["ENTRY_POINT_GROUP", "available_strategies", "get_strategy", "register_strategy"]

ENTRY_POINT_GROUP = "axolotl_mipo.pairing"

_REGISTRY: dict[str, type[PairingStrategy]] = {}

S = TypeVar("S", bound=type[PairingStrategy])


def register_strategy(cls: S) -> S:
    """Class decorator: make ``cls`` available under ``cls.name``.

    Refuses (with :class:`MIPOStrategyError`) a class that is not a concrete
    :class:`PairingStrategy`, an empty name, a name with ``':'`` (reserved for
    ``module:object`` paths), and a name already taken by another class.
    Registering the very same class twice is a no-op.
    """
    _check_class(cls, f"register_strategy({getattr(cls, '__name__', cls)!r})")
    name = cls.name
    if not isinstance(name, str) or not name.strip() or name != name.strip() or ":" in name:
        raise MIPOStrategyError(
            f"register_strategy: {cls.__qualname__}.name is {name!r}; set the class attribute name to a non-empty "
            "string without ':' or surrounding spaces, e.g. name = 'my_strategy'"
        )
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise MIPOStrategyError(
            f"register_strategy: the name {name!r} is already taken by {existing.__module__}.{existing.__qualname__}; "
            f"give {cls.__module__}.{cls.__qualname__} another name"
        )
    _REGISTRY[name] = cls
    return cls


def _ensure_builtins() -> None:
    # the built-ins register themselves on import; importing here avoids a cycle
    import axolotl_mipo.pairing.prompts  # noqa: F401
    import axolotl_mipo.pairing.strategies  # noqa: F401


def _entry_points() -> list[Any]:
    # looked up on the module at call time so that tests can monkeypatch it
    try:
        return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # broken metadata of an unrelated package must not break training
        return []


def available_strategies() -> list[str]:
    """Sorted names of the built-in strategies and of the installed entry points (none is imported)."""
    _ensure_builtins()
    names = set(_REGISTRY)
    names.update(ep.name for ep in _entry_points() if getattr(ep, "group", ENTRY_POINT_GROUP) == ENTRY_POINT_GROUP)
    return sorted(names)


def _check_class(obj: Any, where: str) -> None:
    if not (isinstance(obj, type) and issubclass(obj, PairingStrategy)):
        raise MIPOStrategyError(
            f"{where} is {obj!r}, not a PairingStrategy subclass; point it at a class that subclasses "
            "axolotl_mipo.pairing.PairingStrategy"
        )
    if inspect.isabstract(obj):
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
        raise MIPOStrategyError(
            f"{where} is the abstract class {obj.__qualname__}; implement {', '.join(missing)}"
        )


def _load_entry_point(name: str) -> type[PairingStrategy] | None:
    matches = [ep for ep in _entry_points() if ep.name == name
               and getattr(ep, "group", ENTRY_POINT_GROUP) == ENTRY_POINT_GROUP]
    if not matches:
        return None
    values = sorted({getattr(ep, "value", repr(ep)) for ep in matches})
    if len(values) > 1:
        raise MIPOStrategyError(
            f"pairing strategy {name!r} is declared by several installed packages ({', '.join(values)}) in entry "
            f"point group {ENTRY_POINT_GROUP!r}; uninstall one, or name the class directly as module:object"
        )
    where = f"entry point {name!r} ({values[0]}) of group {ENTRY_POINT_GROUP!r}"
    try:
        obj = matches[0].load()
    except Exception as e:
        raise MIPOStrategyError(
            f"could not load {where}: {type(e).__name__}: {e}; fix or reinstall the package that declares it"
        ) from e
    _check_class(obj, where)
    return obj


def _load_path(path: str) -> type[PairingStrategy]:
    module_name, _, qualname = path.partition(":")
    module_name, qualname = module_name.strip(), qualname.strip()
    if not module_name or not qualname:
        raise MIPOStrategyError(
            f"mipo.strategy {path!r} is not a valid module:object path; write it as 'package.module:ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise MIPOStrategyError(
            f"mipo.strategy {path!r}: cannot import module {module_name!r} ({e}); check the spelling and that the "
            "package is installed in this environment"
        ) from e
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise MIPOStrategyError(
                f"mipo.strategy {path!r}: module {module_name!r} has no attribute {qualname!r}; check the class name"
            ) from None
    _check_class(obj, f"mipo.strategy {path!r}")
    return obj


def _instantiate(cls: type[PairingStrategy], name: str, options: dict[str, Any]) -> PairingStrategy:
    sig = inspect.signature(cls.__init__)
    try:
        sig.bind(None, **options)
    except TypeError:
        accepted = [p.name for p in list(sig.parameters.values())[1:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise MIPOStrategyError(
            f"pairing strategy {name!r} does not accept the options {sorted(options)} given in "
            f"mipo.strategy_kwargs; it accepts {', '.join(accepted) or 'none'}"
        ) from None
    strategy = cls(**options)
    if not strategy.name:
        # an unregistered class may leave name empty; the dataset records the name it was asked for
        strategy.name = name
    return strategy


def get_strategy(name: str, **options: Any) -> PairingStrategy:
    """An instance of the strategy called ``name``, built with ``options`` (``mipo.strategy_kwargs``).

    Resolution order: built-in registry, entry point of group
    ``axolotl_mipo.pairing``, then ``module:object`` path (only for names with
    ``':'``). Raises :class:`MIPOStrategyError` for an unknown name (listing
    the available ones), a failed import, an object that is not a
    :class:`PairingStrategy` subclass, or options the class does not accept.
    """
    if not isinstance(name, str) or not name.strip():
        raise MIPOStrategyError(
            f"mipo.strategy must be a non-empty string, got {name!r}; e.g. strategy: drop_context"
        )
    name = name.strip()
    _ensure_builtins()
    cls = _REGISTRY.get(name)
    if cls is None:
        cls = _load_entry_point(name)
    if cls is None and ":" in name:
        cls = _load_path(name)
    if cls is None:
        available = available_strategies()
        hint = ""
        close = difflib.get_close_matches(name, available, n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        elif "." in name:
            module, _, obj = name.rpartition(".")
            hint = f" (to load a class by path, separate module and object with ':', e.g. '{module}:{obj}')"
        raise MIPOStrategyError(
            f"unknown pairing strategy {name!r}{hint}; mipo.strategy must be one of {', '.join(available)}, "
            f"an entry point of group {ENTRY_POINT_GROUP!r}, or a 'package.module:ClassName' path"
        )
    return _instantiate(cls, name, options)
