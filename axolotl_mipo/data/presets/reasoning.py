"""The reasoning presets ``gsm8k``, ``svamp``, ``arc`` and ``mmlu``: benchmark questions as published.

MIPO's second result (arXiv 2603.19294) is self-improvement on math and multiple-choice questions with no
labels. These presets read the benchmarks' own rows into plain questions: no user context
(``Preset.context=False``, so only the prompt-only strategies ``mismatched_prompt`` and ``partial_prompt``
accept them), the question wrapped in the authors' prompt, and the gold answer kept in ``Example.meta`` for
``axolotl-mipo eval`` only (:func:`axolotl_mipo.data.rows.set_gold`): no prompt is rendered from it, and the
dataset builder leaves it out of every DPO row. ``meta["question"]`` holds the question alone, so
``partial_prompt`` shortens it and not the instruction or the exemplars.

The default prompts are the authors' (nam630/mutual_information_preference_optimization,
``contrastive_finetune-main.zip`` at commit 59d1b5e): ``eval_scripts/gsm.py`` ``dataset()`` and
``eval_scripts/svamp.py`` ``dataset()`` for the numeric ones (an instruction, the exemplars, then
``"New question: "``), ``eval_scripts/arc.py`` ``evaluate()`` for the multiple-choice ones (a head, the
question, the options relabelled ``A``, ``B``, ... by position, the tail); the authors have no MMLU script,
and ``mmlu`` uses the ARC prompt. ``prompt_template`` replaces them; ``few_shot_path`` names a file of
exemplars in the preset's own row shape, rendered as ``gsm.py`` renders its eight ("Example {i}:\\nQuestion:
...\\nAnswer: ...\\n#### N"). An exemplar is never a row trained or evaluated on: the same file, or a row
whose question is also an exemplar, is refused.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from axolotl_mipo.data.answer_keys import CHOICE_LETTERS, choice_letter
from axolotl_mipo.data.example import QUESTION_KEY, Example
from axolotl_mipo.data.files import BadLine, clean_text
from axolotl_mipo.data.presets.base import Preset, PresetOption
from axolotl_mipo.data.presets.readers import iter_source, need_list, need_text, opt_text
from axolotl_mipo.errors import MIPODataError

__all__ = ["CHOICE_TEMPLATE", "NUMBER_TEMPLATE", "PRESETS"]

# gsm.py and svamp.py, dataset(): PROMPT = <this> + "\n\n" + exemplars, then + "\n\nNew question: " + question
NUMBER_INSTRUCTION = ("You are a helpful math assistant. Solve the following problem step-by-step and give the "
                      "final answer after ####.")
# arc.py, evaluate(): head + "\n\n" + question + "\n\n" + options + "\n\n" + tail
CHOICE_HEAD = ("You are a helpful assistant. The following is a multiple choice question with answer choices. Your "
               "response should show clear and concise reasoning, and you should end with \"The answer is: <X>\", "
               "where X is the correct letter choice.")
CHOICE_TAIL = "Your response should end with \"The answer is: <X>\", where X is the correct letter choice."
#: ``{examples}`` is the few-shot block followed by a blank line, or nothing: zero-shot is the instruction,
#: a blank line and the question
NUMBER_TEMPLATE = NUMBER_INSTRUCTION + "\n\n{examples}New question: {question}"
CHOICE_TEMPLATE = CHOICE_HEAD + "\n\n{examples}{question}\n\n{choices}\n\n" + CHOICE_TAIL

_GOLD_NUMBER = re.compile(r"[-\u2212]?\s?\$?\s?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\.?")
# GSM8K's worked answers carry calculator annotations (<<48/2=24>>): tool markup, not reasoning to imitate
_CALC = re.compile(r"<<[^<>]*>>")


class _Item(NamedTuple):
    """One question as read: its text and field, the rendered options, the gold answer and its field."""

    question: str
    question_field: str
    choices: str | None
    gold: Any
    gold_field: str
    worked: str | None = None  # the worked answer, shown when the row is a few-shot exemplar


def _err(msg: str, idx: int, field: str | None, source: str) -> MIPODataError:
    return MIPODataError(msg, row=idx, field=field, source=source)


def _gold_number(text: str, *, idx: int, field: str, source: str, what: str) -> str:
    text = text.strip()
    if not _GOLD_NUMBER.fullmatch(text):
        raise _err(f"{what} {text!r} is not a number (e.g. 18, -3, 2.5, 1,000); fix the row or remove it", idx,
                   field, source)
    return text


# ----------------------------------------------------------------- one row of each shape


def _gsm8k_item(row: dict, idx: int, source: str) -> _Item:
    """GSM8K (https://huggingface.co/datasets/openai/gsm8k, config ``main``): ``{question, answer}``, the answer a
    worked solution ending in ``#### N``; the gold answer is N."""
    question = need_text(row, "question", idx=idx, source=source, what="gsm8k preset (the question)")
    answer = need_text(row, "answer", idx=idx, source=source, what="gsm8k preset (the gold answer after ####)")
    worked, mark, final = answer.rpartition("####")
    if not mark:
        raise _err("has no '#### N' final answer; a GSM8K answer ends with '#### <number>'", idx, "answer", source)
    gold = _gold_number(final, idx=idx, field="answer", source=source, what="the final answer after '####'")
    return _Item(question, "question", None, gold, "answer", _CALC.sub("", worked).strip())


def _svamp_item(row: dict, idx: int, source: str) -> _Item:
    """SVAMP (github.com/arkilpatel/SVAMP, https://huggingface.co/datasets/ChilleD/SVAMP): ``{ID, Body, Question,
    Equation, Answer, Type}`` and on the hub ``question_concat``. The question is ``question_concat`` when the
    row has it (the authors' choice, ``svamp.py``), else ``Body`` and ``Question`` joined by a space (how
    ``question_concat`` is made); the gold answer is ``Answer``, a number."""
    question = opt_text(row, "question_concat")
    field = "question_concat"
    if question is None:
        body = need_text(row, "Body", idx=idx, source=source, what="svamp preset (the problem, or question_concat)")
        ask = need_text(row, "Question", idx=idx, source=source, what="svamp preset (the question, or "
                        "question_concat)")
        question, field = f"{body.strip()} {ask.strip()}", "Question"
    if "Answer" not in row or row["Answer"] is None:
        raise _err("missing; the svamp preset needs it (the gold answer)", idx, "Answer", source)
    value = row["Answer"]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _err(f"must be a number, got {type(value).__name__}", idx, "Answer", source)
    if isinstance(value, float) and not math.isfinite(value):
        raise _err(f"must be a finite number, got {value}", idx, "Answer", source)
    if isinstance(value, str):
        value = _gold_number(value, idx=idx, field="Answer", source=source, what="the answer")
    equation = opt_text(row, "Equation")
    short = _short_number(value)
    return _Item(question, field, None, value, "Answer", f"{equation.strip()} = {short}" if equation else None)


def _short_number(value: Any) -> str:
    """``18.0`` -> ``"18"``: how an exemplar's final answer is written after ``####``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number_exemplar(row: dict, idx: int, source: str) -> _Item:
    """A few-shot exemplar of gsm8k or svamp: a GSM8K row (the authors' exemplars are GSM8K-style, for SVAMP
    too) or a SVAMP row."""
    return _gsm8k_item(row, idx, source) if "answer" in row else _svamp_item(row, idx, source)


def _options(texts: list, idx: int, field: str, source: str) -> str:
    """The options as arc.py shows them: ``"A: <text>"`` lines, relabelled by position."""
    if not 2 <= len(texts) <= len(CHOICE_LETTERS):
        raise _err(f"has {len(texts)} choices; a question needs 2 to {len(CHOICE_LETTERS)} (A-E)", idx, field,
                   source)
    lines = []
    for letter, text in zip(CHOICE_LETTERS, texts):
        if isinstance(text, bool) or not isinstance(text, (str, int, float)) or not str(text).strip():
            raise _err(f"choice {letter} is empty or not text ({text!r})", idx, field, source)
        lines.append(f"{letter}: {clean_text(str(text)).strip()}")
    return "\n".join(lines)


def _arc_item(row: dict, idx: int, source: str) -> _Item:
    """ARC (https://huggingface.co/datasets/allenai/ai2_arc), CommonsenseQA
    (https://huggingface.co/datasets/tau/commonsense_qa) and OpenBookQA
    (https://huggingface.co/datasets/allenai/openbookqa): ``{question, choices: {text: [...], label: [...]},
    answerKey}``; OpenBookQA names the question ``question_stem``. The original releases' JSONL nest them,
    ``{question: {stem, choices: [{label, text}]}, answerKey}``, and are read too. ``answerKey`` is a label
    (a letter, or a digit in a few ARC rows); the gold answer is the letter the prompt shows for it, by the
    label's position (:func:`~axolotl_mipo.data.answer_keys.choice_letter`)."""
    q = row.get("question")
    if isinstance(q, dict):  # the original AI2 / CommonsenseQA JSONL
        question = need_text(q, "stem", idx=idx, source=source, what="arc preset (the question)")
        qfield, cfield, choices = "question", "question.choices", q.get("choices")
    else:
        qfield = "question" if "question" in row or "question_stem" not in row else "question_stem"
        question = need_text(row, qfield, idx=idx, source=source, what="arc preset (the question)")
        cfield, choices = "choices", row.get("choices")
    if isinstance(choices, list) and all(isinstance(c, dict) for c in choices):
        texts, labels = [c.get("text") for c in choices], [c.get("label") for c in choices]
    elif isinstance(choices, dict) and isinstance(choices.get("text"), list) and isinstance(choices.get("label"),
                                                                                         list):
        texts, labels = list(choices["text"]), list(choices["label"])
    else:
        raise _err("must be {text: [...], label: [...]} (or a list of {label, text}), got "
                   f"{type(choices).__name__}", idx, cfield, source)
    if len(texts) != len(labels) or any(lb is None or not str(lb).strip() for lb in labels):
        raise _err(f"every choice needs a text and a label ({len(texts)} texts, labels {labels})", idx, cfield,
                   source)
    options = _options(texts, idx, cfield, source)
    key = row.get("answerKey")
    if key is None or isinstance(key, (bool, dict, list)) or not str(key).strip():
        raise _err("missing or empty; the arc preset needs the gold label (an unlabelled test split has none)",
                   idx, "answerKey", source)
    try:
        gold = choice_letter(str(key), [str(lb) for lb in labels])
    except ValueError as exc:
        raise _err(str(exc), idx, "answerKey", source) from None
    return _Item(question, qfield, options, gold, "answerKey")


def _mmlu_item(row: dict, idx: int, source: str) -> _Item:
    """MMLU (https://huggingface.co/datasets/cais/mmlu): ``{question, subject, choices: [4 texts], answer}``,
    ``answer`` the 0-based index of the right choice (a letter, as in the original CSV files, is read too)."""
    question = need_text(row, "question", idx=idx, source=source, what="mmlu preset (the question)")
    texts = need_list(row, "choices", idx=idx, source=source, what="mmlu preset (the options)")
    options = _options(texts, idx, "choices", source)
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer.strip())
    if answer is None or isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise _err(f"must be the 0-based index of the right choice, got {answer!r}", idx, "answer", source)
    if isinstance(answer, int) and not 0 <= answer < len(texts):
        raise _err(f"answer {answer} is out of range: the row has {len(texts)} choices (0-{len(texts) - 1})",
                   idx, "answer", source)
    try:
        gold = choice_letter(answer)
    except ValueError as exc:
        raise _err(str(exc), idx, "answer", source) from None
    if CHOICE_LETTERS.index(gold) >= len(texts):
        raise _err(f"answer {answer!r} is out of range: the row has {len(texts)} choices (0-{len(texts) - 1})",
                   idx, "answer", source)
    return _Item(question, "question", options, gold, "answer")


# ----------------------------------------------------------------- prompts


def _template_check(fields: tuple[str, ...]) -> Callable[[Any], str | None]:
    """The check of ``prompt_template``: ``{question}`` (and for multiple choice ``{choices}``) present, no other
    placeholder."""

    def check(template: str) -> str | None:
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            return f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        bad = sorted(used - set(fields))
        if bad:
            return f"has an unknown placeholder {{{bad[0]}}}; use {', '.join('{' + f + '}' for f in fields)}"
        missing = [f for f in fields if f != "examples" and f not in used]
        return f"must contain {{{missing[0]}}}" if missing else None

    return check


def _exemplar(item: _Item, i: int) -> str:
    if item.choices is None:
        # gsm.py: f"Example {i+1}:\n" + f"Question: {question}\nAnswer: {answer}\n#### {short_answer}"
        answer = f"Answer: {item.worked}\n" if item.worked else "Answer:\n"
        return f"Example {i}:\nQuestion: {item.question}\n{answer}#### {_short_number(item.gold)}"
    # the authors have no multiple-choice exemplars: the question as asked, then the ending the prompt asks for
    return f"Example {i}:\n{item.question}\n\n{item.choices}\n\nThe answer is: {item.gold}"


def _key(question: str) -> str:
    return " ".join(question.split()).casefold()


def _same_data(ds_cfg, shots: str) -> bool:
    few = Path(shots).expanduser()
    data = Path(ds_cfg.path).expanduser()
    if not few.exists() or not data.exists():
        return shots == ds_cfg.path
    few, data = few.resolve(), data.resolve()
    return few == data or (data.is_dir() and data in few.parents)


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str  # the gold answer's kind: "number" or "choice"
    item: Callable[[dict, int, str], _Item]
    exemplar_item: Callable[[dict, int, str], _Item]
    template: str


def _read_shots(spec: _Spec, ds_cfg, template: str) -> tuple[str, dict[str, int]]:
    """``(the few-shot block, {question key: exemplar number})`` of ``few_shot_path``; no file: ``("", {})``."""
    shots = ds_cfg.few_shot_path
    if not shots:
        return "", {}
    if "{examples}" not in template:
        raise MIPODataError("has no {examples} placeholder, so few_shot_path would be ignored; add {examples} "
                            "where the exemplars go, or remove few_shot_path", field="prompt_template",
                            source=ds_cfg.path)
    if _same_data(ds_cfg, shots):
        raise MIPODataError(f"few_shot_path {shots!r} is the dataset's own data ({ds_cfg.path!r}); exemplars must "
                            "come from rows that are never trained or evaluated on: point few_shot_path at a "
                            "separate file (e.g. a few rows of the train split held out of path)",
                            field="few_shot_path", source=ds_cfg.path)
    rows, source = iter_source(SimpleNamespace(path=shots, data_files=None, split="train"))
    items: list[_Item] = []
    for idx, row in enumerate(rows):
        if isinstance(row, BadLine):
            raise row.error
        if not isinstance(row, dict):
            raise _err(f"must be an object with named fields, got {type(row).__name__}", idx, None, source)
        items.append(spec.exemplar_item(row, idx, source))
    if not items:
        raise MIPODataError("has no rows; fill it with worked exemplars or remove few_shot_path",
                            field="few_shot_path", source=source)
    block = "\n\n".join(_exemplar(it, i + 1) for i, it in enumerate(items)) + "\n\n"
    return block, {_key(it.question): i + 1 for i, it in enumerate(items)}


def _keep_gold(meta: dict, item: _Item, kind: str, idx: int, source: str) -> None:
    # imported here: axolotl_mipo.data.rows imports this package (its preset registry) while it loads
    from axolotl_mipo.data.rows import set_gold

    set_gold(meta, item.gold, kind, idx=idx, field=item.gold_field, source=source)


def _binder(spec: _Spec) -> Callable[[Any], Callable[..., Example]]:
    def bind(ds_cfg) -> Callable[..., Example]:
        """The split of one dataset: its template and few-shot block are made once."""
        template = ds_cfg.prompt_template or spec.template
        block, shot_keys = _read_shots(spec, ds_cfg, template)

        def split(row: Any, cfg, idx: int, source: str) -> Example:
            if not isinstance(row, dict):
                raise _err(f"must be an object with named fields, got {type(row).__name__}", idx, None, source)
            item = spec.item(row, idx, source)
            shot = shot_keys.get(_key(item.question))
            if shot is not None:
                raise _err(f"this question is also exemplar {shot} of few_shot_path {cfg.few_shot_path!r}; a "
                           "model must not be trained or evaluated on a question it is shown worked: remove it "
                           "from the few-shot file or the row from the data", idx, item.question_field, source)
            prompt = template.format(question=item.question, examples=block, choices=item.choices or "")
            meta: dict[str, Any] = {QUESTION_KEY: item.question}
            _keep_gold(meta, item, spec.kind, idx, source)
            return Example(index=idx, messages=(("user", prompt),), context=None, source=source, meta=meta)

        return split

    return bind


def _split(bind: Callable[[Any], Callable[..., Example]]) -> Callable[..., Example]:
    """The split of one row outside :func:`~axolotl_mipo.data.rows.load_examples` (which binds once per
    dataset): the bound split is kept per template and few-shot file, so the file is read once."""
    bound: dict[tuple, Callable[..., Example]] = {}

    def split(row: Any, ds_cfg, idx: int, source: str) -> Example:
        shots = ds_cfg.few_shot_path
        stamp = Path(shots).expanduser().stat().st_mtime_ns if shots and Path(shots).expanduser().exists() else None
        key = (ds_cfg.prompt_template, shots, stamp, ds_cfg.path)
        if key not in bound:
            bound.clear()
            bound[key] = bind(ds_cfg)
        return bound[key](row, ds_cfg, idx, source)

    return split


def _preset(spec: _Spec, card: str, license: str) -> Preset:
    fields = ("question", "examples") + (("choices",) if spec.kind == "choice" else ())
    options = {"prompt_template": PresetOption(default=spec.template, check=_template_check(fields)),
               "few_shot_path": PresetOption()}
    bind = _binder(spec)
    return Preset(spec.name, _split(bind), options=options, card=card, license=license, bind=bind,
                  context=False)


PRESETS = (
    _preset(_Spec("gsm8k", "number", _gsm8k_item, _number_exemplar, NUMBER_TEMPLATE),
            "https://huggingface.co/datasets/openai/gsm8k", "MIT"),
    _preset(_Spec("svamp", "number", _svamp_item, _number_exemplar, NUMBER_TEMPLATE),
            "https://github.com/arkilpatel/SVAMP", "MIT (arkilpatel/SVAMP)"),
    _preset(_Spec("arc", "choice", _arc_item, _arc_item, CHOICE_TEMPLATE),
            "https://huggingface.co/datasets/allenai/ai2_arc",
            "ARC: CC BY-SA 4.0; CommonsenseQA, OpenBookQA: see their cards"),
    _preset(_Spec("mmlu", "choice", _mmlu_item, _mmlu_item, CHOICE_TEMPLATE),
            "https://huggingface.co/datasets/cais/mmlu", "MIT"),
)
