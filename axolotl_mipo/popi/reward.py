"""POPI's reward for one sampled preference summary (arXiv 2510.17881).

For a summary ``s`` of a user's history, the user's query ``x`` and their held-out pair
``(y_w, y_l)``, a *frozen* generator ``pi`` scores the pair with the summary as the user context and
the same model, as reference, scores it from the query alone::

    delta  = [log pi(y_w | s, x) - log pi(y_l | s, x)] - [log pi(y_w | x) - log pi(y_l | x)]
    loss   = -log sigmoid(beta * delta) / beta
    reward = -loss - length_penalty * tokens(s)

i.e. minus the DPO loss the generator would have on the user's pair if the summary were its context:
a summary earns reward by telling the generator which of the user's two responses they prefer.
``beta`` defaults to 0.01, POPI's setting. Log-probabilities are sums over the response tokens,
tokenized as TRL's DPO trainer tokenizes a conversational ``chosen`` turn, so the reward is the
implicit-reward margin DPO would train on. The summary enters the prompt exactly as
``context_builder: preference_summary`` puts a summary there (``context_placement`` /
``context_template``), so a summarizer trained here writes for the prompts MIPO will build.

An empty summary is scored as no context at all: its prompt is the query alone, so ``delta`` is 0
and the reward is ``log sigmoid(0) / beta`` (counted in ``popi/empty_summaries``).

The reference term depends on the row only, so it is computed once per (query, pair) and kept for
the process: GRPO samples ``num_generations`` summaries per prompt and revisits prompts each epoch.

Axolotl loads :func:`popi_reward` by its dotted path (``trl.reward_funcs``). TRL calls it with
``prompts``, ``completions``, ``completion_ids``, every other dataset column as a keyword (here
``popi_query``, ``popi_chosen``, ``popi_rejected``), plus ``trainer_state``, ``log_extra`` and
``log_metric`` (trl 1.9 and 1.14 alike). The frozen generator is loaded at the first call, once per
process, on the device ``POPIPlugin`` configured (the trainer's), and scores in batches.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.errors import MIPOConfigError, MIPODataError

LOG = logging.getLogger("axolotl_mipo.popi")

DEFAULT_BETA = 0.01
COLUMNS = ("popi_query", "popi_chosen", "popi_rejected")


@dataclass(frozen=True)
class RewardSettings:
    """What the reward needs besides the batch; set by ``POPIPlugin`` (or :func:`configure`)."""

    generator: str  # a model folder / hub name
    adapter: str | None = None  # a PEFT adapter folder applied on ``generator`` (merged, frozen)
    tokenizer: str | None = None  # default: the adapter folder if it has a tokenizer, else ``generator``
    beta: float = DEFAULT_BETA
    length_penalty: float = 0.0  # per summary token
    batch_size: int = 8
    dtype: str = "auto"  # auto: bfloat16 on a GPU that supports it, else float32
    device: str | None = None  # default: cuda if available, else cpu
    fmt: PromptFormat = field(default_factory=PromptFormat)
    trust_remote_code: bool = False


@dataclass
class RewardStats:
    """Totals over the process (the per-batch means go to TRL's metrics through ``log_metric``)."""

    calls: int = 0
    summaries: int = 0
    empty_summaries: int = 0
    reference_rows: int = 0  # distinct (query, pair) whose reference log-ratio was computed


class FrozenGenerator:
    """A model that only scores: ``log p(chosen | prompt) - log p(rejected | prompt)`` in batches."""

    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def log_ratios(self, prompts: Sequence[list[dict]], chosen: Sequence[str], rejected: Sequence[str]) -> list[float]:
        from axolotl_mipo.scoring import response_logprobs

        n = len(prompts)
        if not n:
            return []
        # chosen and rejected of every row in one sorted, batched pass
        scores = response_logprobs(self.model, self.tokenizer, [*prompts, *prompts], [*chosen, *rejected],
                                   batch_size=self.batch_size)
        return [scores[i][0] - scores[n + i][0] for i in range(n)]

    def n_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def popi_loss(delta: float, beta: float) -> float:
    """``-log sigmoid(beta * delta) / beta``, stable for any sign of ``delta``."""
    z = beta * delta
    # -log sigmoid(z) = softplus(-z) = max(-z, 0) + log1p(exp(-|z|))
    return (max(-z, 0.0) + math.log1p(math.exp(-abs(z)))) / beta


def summary_text(completion) -> str:
    """The summary in a TRL completion: a string, or conversational ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        return "".join(summary_text(m) for m in completion if not isinstance(m, dict) or m.get("role") != "user")
    raise TypeError(f"popi_reward: cannot read a summary from a completion of type {type(completion).__name__}")


def _query_messages(query) -> tuple[tuple[str, str], ...]:
    if isinstance(query, str):
        return (("user", query),)
    return tuple((m["role"], m["content"]) for m in query)


class POPIReward:
    """The reward with its frozen generator, its reference cache and its counters."""

    def __init__(self, settings: RewardSettings, generator: FrozenGenerator | None = None):
        if settings.beta <= 0:
            raise MIPOConfigError(f"popi.beta must be > 0, got {settings.beta}")
        self.settings = settings
        self._generator = generator
        self._reference: dict[tuple, float] = {}
        self.stats = RewardStats()
        self._lock = threading.Lock()

    @property
    def generator(self) -> FrozenGenerator:
        with self._lock:
            if self._generator is None:
                self._generator = load_generator(self.settings)
            return self._generator

    def score(self, summaries: Sequence[str], queries: Sequence, chosen: Sequence[str], rejected: Sequence[str],
              ) -> tuple[list[float], list[float], list[float]]:
        """``(rewards, dpo_rewards, length_penalties)`` per summary; ``reward = dpo_reward - length_penalty``."""
        n = len(summaries)
        if not (len(queries) == len(chosen) == len(rejected) == n):
            raise ValueError(f"popi_reward: {n} summaries but {len(queries)} queries, {len(chosen)} chosen and "
                             f"{len(rejected)} rejected")
        gen, s = self.generator, self.settings
        msgs = [_query_messages(q) for q in queries]
        keys = [(m, c, r) for m, c, r in zip(msgs, chosen, rejected)]
        missing = list(dict.fromkeys(k for k in keys if k not in self._reference))
        if missing:
            ref = gen.log_ratios([build_messages(m, None, s.fmt) for m, _, _ in missing],
                                 [c for _, c, _ in missing], [r for _, _, r in missing])
            self._reference.update(zip(missing, ref))
            self.stats.reference_rows += len(missing)

        texts = [t.strip() for t in summaries]
        filled = [i for i, t in enumerate(texts) if t]
        with_summary = gen.log_ratios([build_messages(msgs[i], texts[i], s.fmt) for i in filled],
                                      [chosen[i] for i in filled], [rejected[i] for i in filled])
        policy = {i: lr for i, lr in zip(filled, with_summary)}
        dpo, pen = [], []
        for i in range(n):
            ref = self._reference[keys[i]]
            # an empty summary leaves the query alone in the prompt: the reference's own prompt, so delta = 0
            delta = policy.get(i, ref) - ref
            dpo.append(-popi_loss(delta, s.beta))
            pen.append(s.length_penalty * gen.n_tokens(texts[i]) if s.length_penalty else 0.0)
        self.stats.calls += 1
        self.stats.summaries += n
        self.stats.empty_summaries += n - len(filled)
        return [d - p for d, p in zip(dpo, pen)], dpo, pen


def load_generator(settings: RewardSettings) -> FrozenGenerator:
    """The frozen generator on ``settings.device``: ``generator`` (+ ``adapter``, merged), eval mode, no grads."""
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = settings.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    LOG.info(f"popi: loading the frozen generator {settings.generator}"
             + (f" + adapter {settings.adapter}" if settings.adapter else "") + f" on {device} ({dtype})")
    model = AutoModelForCausalLM.from_pretrained(settings.generator, dtype=getattr(torch, dtype),
                                                 trust_remote_code=settings.trust_remote_code)
    if settings.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, settings.adapter).merge_and_unload()
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    tok_path = settings.tokenizer
    if tok_path is None:
        has_tok = settings.adapter and os.path.exists(os.path.join(settings.adapter, "tokenizer_config.json"))
        tok_path = settings.adapter if has_tok else settings.generator
    tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=settings.trust_remote_code)
    return FrozenGenerator(model, tokenizer, batch_size=settings.batch_size)


# -- the process-wide instance Axolotl's GRPO trainer calls -------------------------------------------------
_REWARD: POPIReward | None = None


def configure(settings: RewardSettings, generator: FrozenGenerator | None = None) -> POPIReward:
    """Set what :func:`popi_reward` uses in this process (``POPIPlugin`` does, once the trainer exists).

    A second call with the same settings keeps the loaded generator and the reference cache.
    """
    global _REWARD
    if _REWARD is not None and _REWARD.settings == settings and generator is None:
        return _REWARD
    _REWARD = POPIReward(settings, generator)
    return _REWARD


def current() -> POPIReward | None:
    return _REWARD


def popi_reward(prompts, completions, popi_query=None, popi_chosen=None, popi_rejected=None, log_metric=None,
                **kwargs) -> list[float]:
    """TRL reward function: POPI's reward of each sampled summary (see the module docstring)."""
    if _REWARD is None:
        raise MIPOConfigError(
            "axolotl_mipo.popi.reward.popi_reward has no generator to score with: enable the plugin "
            "axolotl_mipo.POPIPlugin (it configures the reward), or call axolotl_mipo.popi.reward.configure() first"
        )
    absent = [name for name, v in zip(COLUMNS, (popi_query, popi_chosen, popi_rejected)) if v is None]
    if absent:
        raise MIPODataError(
            f"popi_reward needs the dataset columns {list(COLUMNS)}; {absent} missing. Build the dataset with "
            "axolotl_mipo.POPIPlugin (popi.datasets) rather than Axolotl's own dataset loading",
            field=absent[0],
        )
    summaries = [summary_text(c) for c in completions]
    empty_before = _REWARD.stats.empty_summaries
    rewards, dpo, pen = _REWARD.score(summaries, popi_query, popi_chosen, popi_rejected)
    if log_metric is not None and rewards:
        log_metric("popi/dpo_reward", sum(dpo) / len(dpo))
        log_metric("popi/length_penalty", sum(pen) / len(pen))
        log_metric("popi/empty_summaries", float(_REWARD.stats.empty_summaries - empty_before))
    return rewards
