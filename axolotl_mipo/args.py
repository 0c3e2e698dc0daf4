"""The plugin's options: the ``mipo:`` block of an Axolotl YAML (and the loss options, re-exported).

Like Axolotl's ``integrations/kd/args.py``, this module is what Axolotl imports
for the config schema and the training-arguments mixin (declared in
:mod:`axolotl_mipo.loss_options`, importable from here too), and imports
nothing heavy at module level: Axolotl imports the mixin while its own
training-args module is still loading. The validators import what they check
against when they run: the row formats and the presets' declared options
(:mod:`axolotl_mipo.data`), and what each pairing strategy declares
(:func:`axolotl_mipo.pairing.mixing.check_dataset_formats`), so this module sits
above pairing in the layers and a rule about a preset or a strategy is written
where that preset or strategy is.

Axolotl merges this pydantic model into its config schema and silently drops
keys it does not know. To make a typo fail loudly, every option lives in one
nested ``mipo:`` block whose models forbid extra keys, so ``mipo: {stratgy: x}``
is rejected with a message naming ``stratgy``. ``MIPOPlugin.register`` also
rejects top-level keys that start with ``mipo_`` (a common mistake: options
written flat instead of inside the block).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.loss_options import (  # noqa: F401 - the loss options' public names, also importable from here
    LOSS_OPTIONS,
    MIPOLossSettings,
    MIPOTrainingArgsMixin,
    training_args_from_config,
    validate_options,
    with_defaults,
)


class StrictModel(BaseModel):
    """A model that refuses unknown keys (Axolotl would drop them silently) and checks assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _pydantic_field(f) -> tuple[Any, Any]:
    """The ``mipo:`` block's field for one loss option: its choices as a ``Literal``, its bounds as constraints."""
    meta = f.metadata
    ann = Literal[meta["choices"]] if "choices" in meta else f.type
    bounds = {k: meta[k] for k in ("gt", "ge") if k in meta}
    return ann, Field(default=f.default, description=meta["help"], **bounds)


# the mipo: block's loss options, built from their declaration in loss_options (MIPOConfig inherits them)
_LossOptions = create_model(
    "_LossOptions", __base__=StrictModel, **{name: _pydantic_field(f) for name, f in LOSS_OPTIONS.items()}
)


class MIPODatasetConfig(StrictModel):
    """One input dataset and how its rows split into user context and query."""

    path: str = Field(description="local file (.jsonl/.json/.csv/.parquet) or folder, or a datasets hub name")
    split: str = "train"
    data_files: list[str] | None = None
    format: str = Field(
        default="context_query",
        description=(
            "context_query: a context field and a query field; messages: chat messages, the user context "
            "is the message with context_role (or the context_field if set); prompt: a plain prompt "
            "(reasoning variant, no user context); or a dataset preset: alignx, lamp, prism, "
            "community_alignment (personalization), gsm8k, svamp, arc, mmlu (reasoning benchmarks: no user "
            "context, the gold answer kept for evaluation only) (docs/datasets.md)"
        ),
    )
    context_field: str | None = Field(
        default=None, description="field holding the user context (default 'context' for context_query)"
    )
    query_field: str = "query"
    messages_field: str = "messages"
    context_role: str = Field(default="system", description="messages format: role of the message that is the context")
    prompt_field: str = "prompt"
    reference_field: str | None = Field(default=None, description="optional reference response, kept for evaluation")
    chosen_field: str | None = Field(
        default=None, description="context_query/messages: field holding the user's own preferred response (the "
        "human pair, for preference accuracy and POPI); set with rejected_field",
    )
    rejected_field: str | None = Field(
        default=None, description="context_query/messages: field holding the user's dispreferred response; set with "
        "chosen_field",
    )
    user_field: str | None = Field(
        default=None, description="context_query/messages/prompt: field holding a user id (per-user counts, POPI)",
    )
    answer_field: str | None = Field(
        default=None, description="prompt: field holding the gold answer, for accuracy in axolotl-mipo eval only "
        "(never in a prompt or a training pair); set with answer_kind",
    )
    answer_kind: Literal["number", "choice"] | None = Field(
        default=None, description="number (#### N, last number) or choice (a letter A-E); set with answer_field",
    )
    max_rows: int | None = Field(default=None, ge=1, description="use only the first N rows")
    # -- dataset presets (format: alignx / lamp / prism / community_alignment); see docs/datasets.md
    context_parts: list[str] | None = Field(
        default=None,
        description="alignx: which of demographics, comments, pairs form the context (default all); prism: "
        "which survey fields (default self_description, system_string, stated_prefs)",
    )
    max_items: int | None = Field(
        default=None, ge=0,
        description="alignx: comments / past pairs kept per list (default 4); lamp: profile items (default 8, "
        "null = all); community_alignment: the annotator's other conversations in the context (default 0)",
    )
    item_order: Literal["first", "last", "newest", "oldest"] | None = Field(
        default=None, description="lamp: which profile items are kept: first/last in file order, or by date "
        "(undated items after dated ones); default first",
    )
    max_item_chars: int | None = Field(
        default=None, ge=8, description="presets: cut each rendered profile item / comment to this many characters",
    )
    outputs_file: str | None = Field(
        default=None, description="lamp: the separate outputs file {task, golds: [{id, output}]} of the original LaMP "
        "release, matched to questions by id",
    )
    rejected_response: Literal["worst", "random", "first"] | None = Field(
        default=None, description="which non-preferred response is the human pair's rejected one: prism worst "
        "(default, lowest score), random or first (by within_turn_id); community_alignment random (default) or "
        "first (a..d)",
    )
    prompt_template: str | None = Field(
        default=None, description="gsm8k, svamp, arc, mmlu: the prompt around each question, with {question}, "
        "{examples} (the few-shot block, empty without few_shot_path) and for arc/mmlu {choices} (default: the "
        "MIPO authors' instruction, docs/datasets.md)",
    )
    few_shot_path: str | None = Field(
        default=None, description="gsm8k, svamp, arc, mmlu: a file of worked exemplars in the preset's own row "
        "shape, shown before each question; never the rows trained or evaluated on (a shared question is refused)",
    )
    survey_config: str = Field(default="survey", description="prism: the hub config holding the survey")
    conversations_config: str = Field(default="conversations", description="prism: the hub config holding the "
                                      "conversations")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        import difflib

        from axolotl_mipo.data.presets import PRESET_NAMES
        from axolotl_mipo.data.rows import GENERIC_FORMATS

        known = (*GENERIC_FORMATS, *PRESET_NAMES)
        if v not in known:
            close = difflib.get_close_matches(v, known, n=1, cutoff=0.5)
            raise ValueError(f"unknown format {v!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" (known: {', '.join(known)})")
        return v

    def _given(self, key: str) -> bool:
        """Whether ``key`` holds a value of its own (not ``None``, not its default: a dumped and reloaded config
        writes every default)."""
        value = getattr(self, key)
        return value is not None and value != type(self).model_fields[key].default

    @model_validator(mode="after")
    def _format_options(self) -> MIPODatasetConfig:
        """The preset options each preset declares (``Preset.options``), and the generic formats' own keys."""
        from axolotl_mipo.data.presets import PRESETS, preset_option_keys

        def refuse(key: str, why: str):
            raise ValueError(f"mipo.datasets[].{key}: {why}")

        preset = PRESETS.get(self.format)
        for key, owners in preset_option_keys().items():
            if not self._given(key):
                continue
            if preset is None:
                refuse(key, f"is an option of the dataset presets, not of format {self.format!r}")
            if key not in preset.options:
                refuse(key, f"is an option of {_and(owners)}, not of {preset.name}")
            why = preset.options[key].problem(getattr(self, key))
            if why:
                refuse(key, why)
        if (self.answer_field is None) != (self.answer_kind is None):
            refuse("answer_kind" if self.answer_kind is None else "answer_field",
                   "is missing; a gold answer needs both answer_field and answer_kind")
        if self.answer_field is not None and self.format != "prompt":
            refuse("answer_field", f"is an option of format prompt (reasoning rows), not of {self.format!r}")
        for key in ("chosen_field", "rejected_field", "user_field"):
            if getattr(self, key) is not None and preset is not None:
                refuse(key, f"is an option of the generic formats; the {preset.name} preset reads its own pairs "
                       "and users")
        if (self.chosen_field is None) != (self.rejected_field is None):
            refuse("chosen_field" if self.chosen_field is None else "rejected_field",
                   "is missing; a human pair needs both chosen_field and rejected_field")
        if self.chosen_field is not None and not self.has_context:
            refuse("chosen_field", f"is an option of context_query and messages; {self.format} rows have no user "
                   "context")
        return self

    @property
    def has_context(self) -> bool:
        """Whether this dataset's rows carry a user context: what its preset declares (``Preset.context``), and
        for the generic formats every one but ``prompt``."""
        from axolotl_mipo.data.presets import PRESETS
        from axolotl_mipo.data.rows import FORMATS_WITHOUT_CONTEXT

        preset = PRESETS.get(self.format)
        return preset.context if preset is not None else self.format not in FORMATS_WITHOUT_CONTEXT


def _and(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class MIPOGenerationConfig(StrictModel):
    """How the base model generates the chosen and rejected responses (paper defaults)."""

    backend: Literal["hf", "vllm", "openai"] = Field(
        default="hf", description="hf (CPU/GPU), vllm (offline vllm.LLM, GPU), openai (an OpenAI-compatible server)"
    )
    max_new_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.1, ge=0.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    do_sample: bool = True
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    batch_size: int = Field(default=8, ge=1)
    max_prompt_tokens: int | None = Field(
        default=None, ge=1, description="prompts longer than this are an error (default: sequence_len)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str | None = Field(
        default=None, description="hf: e.g. cpu, cuda, cuda:1 (default: every visible GPU, see devices; else cpu)"
    )
    devices: list[str] | None = Field(
        default=None, min_length=1,
        description="hf, one process: one model copy per listed device, generating batches at the same time "
        "(default when device is unset: every visible GPU; under torchrun each rank uses its own GPU)",
    )
    load_in_4bit: bool | None = Field(
        default=None, description="quantize the generation model (default: follow the top-level load_in_4bit)"
    )
    max_retries: int = Field(default=3, ge=0, description="retries of a failed batch/request before giving up")
    retry_backoff_s: float = Field(default=1.0, ge=0.0, description="base of the exponential backoff between retries")
    # openai backend
    openai_base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8000/v1")
    openai_model: str | None = Field(default=None, description="served model name (default: base_model)")
    openai_api_key_env: str | None = Field(default="OPENAI_API_KEY", description="env var holding the API key")
    concurrency: int = Field(default=8, ge=1, description="openai: requests in flight")
    timeout_s: float = Field(default=120.0, gt=0.0, description="openai: per-request timeout")
    # vllm backend
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.85, gt=0.0, le=1.0)
    vllm_enforce_eager: bool = False

    @model_validator(mode="after")
    def _backend_options(self) -> "MIPOGenerationConfig":
        if self.backend == "openai" and not self.openai_base_url:
            raise ValueError("mipo.generation.backend openai needs mipo.generation.openai_base_url")
        if self.devices and self.backend != "hf":
            raise ValueError(f"mipo.generation.devices is an option of the hf backend, not {self.backend}: remove "
                             "it (vllm: tensor_parallel_size; openai: the server's own GPUs)")
        if self.devices and self.device:
            raise ValueError("set one of mipo.generation.device and mipo.generation.devices, not both")
        # checked here, not at the first generate: vLLM checks SamplingParams only after its model has loaded
        for key in ("temperature", "repetition_penalty"):
            value = getattr(self, key)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"mipo.generation.{key} must be a finite number, got {value}")
        if self.backend in ("vllm", "openai") and self.do_sample and self.temperature > 2.0:
            raise ValueError(f"mipo.generation.temperature {self.temperature}: the {self.backend} backend takes "
                             "0 to 2 (vLLM's SamplingParams and the OpenAI API refuse more)")
        return self


class MIPOSummaryConfig(StrictModel):
    """POPI preference summaries (``context_builder: preference_summary``)."""

    max_new_tokens: int = Field(default=128, ge=1, description="tokens the model may write per summary")
    max_words: int = Field(default=60, ge=1, description="the length the prompt asks for ({max_words})")
    template: str | None = Field(
        default=None,
        description="the summary prompt, with {history} and optionally {max_words}; default: "
        "axolotl_mipo.pipeline.summary.DEFAULT_TEMPLATE",
    )
    report_rows: int = Field(
        default=32, ge=0, description="rows sampled to compare the MI of summary- vs history-conditioned "
        "responses (hf backend; 0 = off)"
    )
    summarizer: str | None = Field(
        default=None,
        description="the model that writes the summaries: a model folder or hub name, or a PEFT adapter folder "
        "(adapter_config.json) merged into base_model, e.g. a POPI summarizer (axolotl_mipo.POPIPlugin); default: "
        "base_model. hf backend only; part of the summary cache key",
    )

    @field_validator("summarizer")
    @classmethod
    def _summarizer_nonempty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("mipo.summary.summarizer is empty; name a model or adapter folder, or remove it")
        return v.strip() if v is not None else v

    @field_validator("template")
    @classmethod
    def _has_history(cls, v: str | None) -> str | None:
        if v is not None and "{history}" not in v:
            raise ValueError("mipo.summary.template must contain '{history}'")
        return v


class StrategyWeight(StrictModel):
    """One entry of a weighted list of pairing strategies (``mipo.strategy: [{name, weight, kwargs}]``)."""

    name: str = Field(description="pairing strategy: a registered name, an entry point, or module:object")
    weight: float = Field(default=1.0, gt=0.0, description="relative share of the rows (normalised over the list)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="options of this strategy")

    @field_validator("name")
    @classmethod
    def _name_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("each mipo.strategy entry must name a pairing strategy, e.g. drop_context")
        return v.strip()


class PromptFormatOptions(StrictModel):
    """Where a user context goes in a prompt: the same keys in the ``mipo:`` and ``popi:`` blocks.

    ``block`` names the block in the messages (``mipo.context_template must ...``).
    """

    block: ClassVar[str] = "mipo"

    context_placement: Literal["system", "user_prefix"] = Field(
        default="system",
        description="where the context goes in the prompt: a system message, or prepended to the first user turn",
    )
    context_template: str = Field(
        default="{context}",
        description="how the context text is rendered; must contain {context}",
    )
    user_prefix_template: str = Field(
        default="{context}\n\n{query}",
        description="context_placement user_prefix: how context and first user turn are joined",
    )

    @field_validator("context_template")
    @classmethod
    def _template_has_context(cls, v: str) -> str:
        if "{context}" not in v:
            raise ValueError(f"{cls.block}.context_template must contain '{{context}}'")
        return v

    @field_validator("user_prefix_template")
    @classmethod
    def _prefix_template(cls, v: str) -> str:
        if "{context}" not in v or "{query}" not in v:
            raise ValueError(f"{cls.block}.user_prefix_template must contain both '{{context}}' and '{{query}}'")
        return v


class MIPOConfig(_LossOptions, PromptFormatOptions):
    """Every option of axolotl-mipo (the loss options come from :class:`MIPOTrainingArgsMixin`).

    Every key, generated from these models: docs/reference/config.md.
    """

    datasets: list[MIPODatasetConfig] = Field(min_length=1)
    strategy: str | list[StrategyWeight] = Field(
        default="drop_context",
        description="pairing strategy: a registered name, an axolotl_mipo.pairing entry point, or module:object; "
        "or a list of {name, weight, kwargs} to mix several (each row goes to one, by a seeded weighted draw)",
    )
    strategy_kwargs: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42
    cache_dir: str | None = Field(
        default=None, description="generation cache folder (default: <dataset_prepared_path or output_dir>/mipo_cache)"
    )
    regenerate: bool = Field(default=False, description="ignore the cache and generate again")
    generation: MIPOGenerationConfig = Field(default_factory=MIPOGenerationConfig)
    context_builder: Literal["none", "preference_summary"] = Field(
        default="none",
        description="preference_summary: replace each user context (a long history) by a short summary of the "
        "user's preferences that the model writes (POPI), before any pairing",
    )
    summary: MIPOSummaryConfig = Field(default_factory=MIPOSummaryConfig)
    val_fraction: float = Field(default=0.0, ge=0.0, lt=1.0, description="fraction of pairs held out for eval")
    on_bad_row: Literal["raise", "skip"] = Field(
        default="raise",
        description="raise: stop at the first bad row with an error naming it; skip: drop bad rows, counted and logged",
    )
    long_prompt: Literal["raise", "skip", "truncate_context"] | None = Field(
        default=None,
        description="a prompt longer than sequence_len: raise, skip the row, or keep the context's last tokens "
        "(default: skip when on_bad_row is skip, else raise)",
    )
    dedupe_rows: bool = Field(default=True, description="drop exact duplicate rows (same context and conversation)")

    @field_validator("strategy")
    @classmethod
    def _strategy_nonempty(cls, v: str | list[StrategyWeight]) -> str | list[StrategyWeight]:
        if isinstance(v, list):
            if not v:
                raise ValueError("mipo.strategy is an empty list; name at least one pairing strategy")
            return v
        if not v.strip():
            raise ValueError("mipo.strategy must name a pairing strategy, e.g. drop_context")
        return v.strip()

    @property
    def strategy_names(self) -> list[str]:
        """The pairing strategy names in use (one, or every entry of a weighted list)."""
        return [self.strategy] if isinstance(self.strategy, str) else [s.name for s in self.strategy]

    @model_validator(mode="after")
    def _combinations(self) -> MIPOConfig:
        from axolotl_mipo.pairing.mixing import check_dataset_formats

        # the loss options' own rules (their cross-field ones included), as the training arguments check them
        validate_options(with_defaults(lambda name: getattr(self, name[len("mipo_"):])))
        if not isinstance(self.strategy, str) and self.strategy_kwargs:
            raise ValueError(
                "mipo.strategy_kwargs cannot be used with a list of strategies; give each entry its own kwargs"
            )
        check_dataset_formats(self.strategy, self.strategy_kwargs, [d.format for d in self.datasets],
                              [d.has_context for d in self.datasets])
        no_context = [i for i, d in enumerate(self.datasets) if not d.has_context]
        if self.context_builder == "preference_summary" and no_context:
            i = no_context[0]
            raise ValueError(
                f"mipo.context_builder preference_summary summarizes each row's user context (history), but "
                f"mipo.datasets[{i}].format is {self.datasets[i].format!r} (no context); use format context_query "
                "or messages"
            )
        if self.summary.summarizer is not None:
            if self.context_builder != "preference_summary":
                raise ValueError("mipo.summary.summarizer writes preference summaries; it needs "
                                 "mipo.context_builder: preference_summary")
            if self.generation.backend != "hf":
                raise ValueError(f"mipo.summary.summarizer generates with the hf backend, not "
                                 f"{self.generation.backend}; set mipo.generation.backend: hf or remove summarizer")
        if "perce" in self.loss and no_context:
            raise ValueError(
                f"mipo.loss perce weights tokens by their dependence on the user context, but a dataset has "
                f"format {self.datasets[no_context[0]].format!r} (no context); use loss dpo or rmipo"
            )
        return self


class MIPOArgs(BaseModel):
    """Merged into Axolotl's config schema (see ``MIPOPlugin.get_input_args``)."""

    mipo: MIPOConfig | None = None


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The pydantic models in an annotation, looking inside unions and lists (``str | list[StrategyWeight]``)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in getattr(ann, "__args__", ()) for m in _models_in(a)]


def _union_branch_errors(errors: list[dict], raw: Any) -> list[dict]:
    """Keep only the errors of the ``mipo.strategy`` form the user wrote (a name or a list), without the branch tag.

    pydantic reports a failed union once per branch (``strategy.str`` and
    ``strategy.list[StrategyWeight]``); only one of them is about what was written.
    """
    written = raw.get("strategy") if isinstance(raw, dict) else None
    wanted = "str" if isinstance(written, str) else "list[StrategyWeight]" if isinstance(written, list) else None
    out = []
    for e in errors:
        loc = tuple(e["loc"])
        if len(loc) > 1 and loc[0] == "strategy" and loc[1] in ("str", "list[StrategyWeight]"):
            if wanted is None:
                if loc[1] == "str":
                    out.append({**e, "loc": ("strategy",),
                                "msg": "must be a strategy name or a list of {name, weight, kwargs}"})
                continue
            if loc[1] != wanted:
                continue
            e = {**e, "loc": (loc[0], *loc[2:])}
        out.append(e)
    return out


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model a validation error location points into."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        inner = _models_in(field.annotation)
        if not inner:
            return []
        model = inner[0]
    return list(model.model_fields)


def validate_block(model: type[PromptFormatOptions], raw: Any) -> Any:
    """``raw`` validated as ``model`` (the ``mipo:`` or ``popi:`` block), pydantic's errors turned into one
    message per bad key, each named from the block down; unknown keys get a "did you mean" from the known
    names at that level."""
    import difflib

    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for e in _union_branch_errors(exc.errors(), raw):
            loc = e["loc"]
            where = model.block + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(loc[-1]), _known_fields(model, loc), n=1)
                msg = "unknown option" + (f"; did you mean {close[0]!r}?" if close else "")
            lines.append(f"{where}: {msg}")
        raise MIPOConfigError(f"invalid '{model.block}:' block:\n  " + "\n  ".join(lines)) from None


def validate_mipo_block(raw: Any) -> MIPOConfig:
    """The ``mipo:`` block, validated (see :func:`validate_block`)."""
    return validate_block(MIPOConfig, raw)


def as_config(raw: Any) -> MIPOConfig:
    """The validated ``MIPOConfig`` from whatever Axolotl stored (dict, DictDefault or model)."""
    if raw is None:
        raise MIPOConfigError("the plugin axolotl_mipo.MIPOPlugin is enabled but the config has no 'mipo:' block")
    if isinstance(raw, MIPOConfig):
        return raw
    return MIPOConfig.model_validate(dict(raw))
