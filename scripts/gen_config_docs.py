"""Write docs/reference/config.md, the config reference, from the option declarations themselves.

    python scripts/gen_config_docs.py            # write the page
    python scripts/gen_config_docs.py --check    # exit 1 when the committed page differs (tests/test_docs.py)

The ``mipo:`` block (``axolotl_mipo.args.MIPOConfig``), the ``popi:`` block (``axolotl_mipo.popi.args.POPIConfig``)
and the training-argument fields (``axolotl_mipo.args.MIPOTrainingArgsMixin``) are walked generically, as
Axolotl's ``docs/scripts/generate_config_docs.py`` walks its schema: pydantic ``model_fields`` (annotation,
default or default factory, description, constraint metadata, ``json_schema_extra``) and dataclass fields (default,
``metadata``). Every pydantic model met in an annotation gets a table of its own, once, and the fields that use it
link there; so a new option, a new nested model or a changed bound shows up without touching this script.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import re
import sys
import types
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "reference" / "config.md"
BLOCKS = [  # (YAML block, "module:Model", what it configures)
    ("mipo", "axolotl_mipo.args:MIPOConfig", "`axolotl_mipo.MIPOPlugin`: pair generation and the DPO loss"),
    ("popi", "axolotl_mipo.popi.args:POPIConfig", "`axolotl_mipo.POPIPlugin`: the summarizer's GRPO run"),
]
TRAINING_ARGS = "axolotl_mipo.args:MIPOTrainingArgsMixin"
_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of"),
           ("min_length", "length >="), ("max_length", "length <="), ("pattern", "matches"))
_DOCUMENTED_META = {"help", "choices", *(k for k, _ in _BOUNDS)}


def _load(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _slug(text: str) -> str:
    """The heading anchor that both Python-Markdown's toc and GitHub derive from this (plain ASCII) text."""
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def _cell(text: str) -> str:
    """One table cell: one line, reST markup (``x``, :class:`X`) as Markdown, ``|`` and ``<`` escaped."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", " ".join(str(text).split())).replace("``", "`")
    return text.replace("|", "\\|").replace("<", "&lt;")


def _yaml(value) -> str:
    """A value as it is written in a YAML config."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{json.dumps(value)}`" if (not value or any(c in value for c in "\n\t:#{}[]")) else f"`{value}`"
    if isinstance(value, (list, tuple, dict)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _allowed(bounds: list[str], choices) -> str:
    """The values a key takes: its choices, or its bounds (``> 0.0, <= 1.0``); empty when anything of its type."""
    return ", ".join([*(_cell(b) for b in bounds), *(_yaml(c) for c in choices)])


def _is_model(tp) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _models_in(tp) -> list:
    if _is_model(tp):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models_in(a)]


def _literal_values(tp) -> list:
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp))
    return [v for a in typing.get_args(tp) for v in _literal_values(a)]


class _Doc:
    """Collects the sections of the page; every model is documented once, the first time it is met."""

    def __init__(self):
        self.sections: list[str] = []
        self.anchor: dict[type, str] = {}  # model -> slug of its section
        self.documented: set[type] = set()

    def type_name(self, tp) -> str:
        if tp is type(None):
            return "null"
        if _is_model(tp):
            return f"[{tp.__name__}](#{self.anchor[tp]})" if tp in self.anchor else tp.__name__
        origin = typing.get_origin(tp)
        if origin is typing.Literal:
            return "str" if all(isinstance(v, str) for v in typing.get_args(tp)) else "literal"
        if origin in (typing.Union, types.UnionType):
            names = list(dict.fromkeys(self.type_name(a) for a in typing.get_args(tp)))
            return " \\| ".join(names)
        if origin is typing.Annotated:
            return self.type_name(typing.get_args(tp)[0])
        if origin in (list, tuple, set, dict):
            inner = ", ".join(self.type_name(a) for a in typing.get_args(tp) if a is not Ellipsis)
            return f"{origin.__name__}[{inner}]" if inner else origin.__name__
        if tp is typing.Any:
            return "any"
        return getattr(tp, "__name__", str(tp).replace("typing.", ""))

    def model(self, path: str, model, intro: str = "") -> None:
        """One section for ``model`` at YAML path ``path`` (``mipo``, ``mipo.datasets[]``), then its nested models."""
        from pydantic_core import PydanticUndefined

        title = f"`{path}`: {model.__name__}"
        self.anchor[model] = _slug(title.replace("`", ""))
        self.documented.add(model)
        lines = [f"## {title}", ""]
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        if intro:
            lines += [intro, ""]
        if doc:
            lines += [_cell(doc), ""]
        lines += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        nested: list[tuple[str, type]] = []
        body_at = len(lines)
        for name, f in model.model_fields.items():
            for m in _models_in(f.annotation):
                if m not in self.documented and m not in [n[1] for n in nested]:
                    list_like = any(typing.get_origin(a) is list and m in _models_in(a)
                                    for a in (f.annotation, *typing.get_args(f.annotation)))
                    nested.append((f"{path}.{name}" + ("[]" if list_like else ""), m))
            if f.is_required():
                default = "required"
            elif f.default_factory is not None:
                value = f.default_factory()
                default = "see its table" if _is_model(type(value)) else _yaml(value)
            else:
                default = _yaml(None if f.default is PydanticUndefined else f.default)
            bounds = [f"{sym} {getattr(meta, key)}" for meta in f.metadata for key, sym in _BOUNDS
                      if getattr(meta, key, None) is not None]
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            choices = _literal_values(f.annotation) or list(extra.get("choices", ()))
            desc = f.description or ""
            notes = [f"{k}: {_cell(v) if isinstance(v, str) else json.dumps(v)}" for k, v in extra.items()
                     if k != "choices"]
            desc = "; ".join(p for p in (desc, *notes) if p)
            lines.append(f"| `{name}` | {{type:{name}}} | {default} | {_allowed(bounds, choices)} | {_cell(desc)} |")
        index = len(self.sections)
        self.sections.append("")
        for sub_path, sub in nested:
            self.anchor[sub] = _slug(f"{sub_path}: {sub.__name__}")
        # the types are written once every nested model has its anchor, so they can link to it
        for i, name in enumerate(model.model_fields):
            lines[body_at + i] = lines[body_at + i].replace(f"{{type:{name}}}",
                                                            _cell(self.type_name(model.model_fields[name].annotation))
                                                            .replace("\\\\|", "\\|"))
        self.sections[index] = "\n".join(lines)
        for sub_path, sub in nested:
            if sub not in self.documented:
                self.model(sub_path, sub)


def _training_args(mixin) -> str:
    lines = ["## Training arguments: " + mixin.__name__, "",
             _cell((mixin.__doc__ or "").strip().split("\n\n")[0]), "",
             "Axolotl merges these fields into its DPO training arguments. Each is set from the `mipo:` key of the "
             "same name without the `mipo_` prefix; the plugin fills them in, so a config sets the `mipo:` key.", "",
             "| field | `mipo:` key | type | default | allowed | help |", "|---|---|---|---|---|---|"]
    for f in dataclasses.fields(mixin):
        meta = dict(f.metadata)
        bounds = [f"{sym} {meta[key]}" for key, sym in _BOUNDS if key in meta]
        rest = [f"{k}: {v}" for k, v in meta.items() if k not in _DOCUMENTED_META]
        ftype = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        key = f.name[len("mipo_"):] if f.name.startswith("mipo_") else ""
        default = "required" if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING else \
            _yaml(f.default_factory() if f.default is dataclasses.MISSING else f.default)
        help_text = _cell("; ".join([meta.get("help", ""), *rest]).strip("; "))
        lines.append(f"| `{f.name}` | {f'`{key}`' if key else ''} | {ftype} | {default} | "
                     f"{_allowed(bounds, meta.get('choices', ()))} | {help_text} |")
    return "\n".join(lines)


def render() -> str:
    doc = _Doc()
    head = [
        "# Config reference",
        "",
        "<!-- Generated by scripts/gen_config_docs.py from the option declarations; do not edit by hand. After",
        "     changing an option, run `python scripts/gen_config_docs.py` (tests/test_docs.py checks the page). -->",
        "",
        "Every key of the plugin's YAML blocks, with its type, default, allowed values (choices or bounds) and "
        "description, generated from the pydantic models and the training-argument dataclass that validate them. "
        "Unknown keys are refused, naming the key. A shorter, hand-written overview with the per-preset defaults: "
        "[Config at a glance](overview.md).",
        "",
    ]
    for block, spec, what in BLOCKS:
        model = _load(spec)
        doc.model(block, model, intro=f"The `{block}:` block of the YAML, read by {what}.")
    body = [*head, *(s + "\n" for s in doc.sections), _training_args(_load(TRAINING_ARGS))]
    return "\n".join(body).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed page differs from the generator's")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if old != text:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                       str(args.out), "generated"))
            print(f"{args.out} is out of date: run python scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
