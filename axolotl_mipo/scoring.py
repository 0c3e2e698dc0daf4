"""Log-probabilities of responses under chat-templated prompts.

Everything the evaluation measures with a model (pointwise conditional MI,
context identification) reduces to ``log p(response | prompt)``. The response
is tokenized the way TRL's DPO trainer tokenizes a conversational ``chosen``
turn: ``template(prompt + [assistant])`` minus ``template(prompt,
add_generation_prompt=True)``. So the tokens scored here are exactly the tokens
DPO trains on, end-of-turn token included, and a score measured before training
is comparable to the implicit reward the trainer optimised.

Choices, documented because they change numbers:

* Sequences are LEFT-padded with explicit ``position_ids``, so every row ends at
  the last column and only the last ``max_response_len + 1`` logits are needed
  (``logits_to_keep`` when the model's ``forward`` accepts it). A 128k-vocab
  model would otherwise materialise ``batch x seq_len x vocab`` floats.
* Log-softmax is taken in float32 whatever the model's dtype.
* The model is put in ``eval()`` mode for the call (dropout would make scores
  random) and restored afterwards.
* Nothing is truncated: a prompt longer than the model's context is the
  caller's problem, as it would be in training.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.prompts import PromptFormat, build_messages

LOG = logging.getLogger(__name__)


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    ids = out["input_ids"]
    # some tokenizers return a batch of one even for a single conversation
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return list(ids)


def tokenize_prompt_response(tokenizer, prompt: list[dict], response: str) -> tuple[list[int], list[int], bool]:
    """``(prompt_ids, response_ids, prefix_ok)`` exactly as TRL's DPO tokenization produces them.

    ``prefix_ok`` is False when the templated prompt is not a prefix of the
    templated conversation (some templates rewrite earlier turns); the ids are
    then split at the prompt's length anyway, as TRL does, so that scores still
    match what training saw.
    """
    prompt_ids = _template_ids(tokenizer, list(prompt), add_generation_prompt=True)
    full_ids = _template_ids(
        tokenizer, list(prompt) + [{"role": "assistant", "content": response}], add_generation_prompt=False
    )
    ok = full_ids[: len(prompt_ids)] == prompt_ids
    return prompt_ids, full_ids[len(prompt_ids):], ok


def _model_device(model):
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        import torch

        return torch.device("cpu")


def _accepts(model, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return name in params


def response_logprobs(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    responses: Sequence[str],
    batch_size: int = 8,
) -> list[tuple[float, int]]:
    """``(sum log p(response tokens | prompt), number of response tokens)`` per pair, in input order.

    ``prompts`` are chat messages (build them with
    :func:`axolotl_mipo.data.prompts.build_messages` so they match training);
    the prompt is rendered with ``add_generation_prompt=True``. Pairs are
    sorted by length (longest first, so an out-of-memory error shows up on the
    first batch) and batched; padding does not change the result beyond float
    rounding.
    """
    import torch

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not prompts:
        return []

    encoded = []
    mismatched = 0
    for prompt, response in zip(prompts, responses):
        p_ids, r_ids, ok = tokenize_prompt_response(tokenizer, prompt, response)
        mismatched += not ok
        encoded.append((p_ids + r_ids, len(r_ids)))
    if mismatched:
        LOG.warning(
            f"mipo eval: for {mismatched} of {len(prompts)} prompts the chat template renders the prompt "
            "differently once the assistant turn is added; the response was split at the prompt's length, "
            "as TRL does in training"
        )

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    device = _model_device(model)
    use_keep = _accepts(model, "logits_to_keep")
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]), reverse=True)
    results: list[tuple[float, int] | None] = [None] * len(encoded)

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                seqs = [encoded[i][0] for i in idx]
                n_resp = [encoded[i][1] for i in idx]
                width = max(len(s) for s in seqs)
                max_r = max(n_resp)
                input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                attn = torch.zeros((len(idx), width), dtype=torch.long)
                for row, s in enumerate(seqs):
                    input_ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
                    attn[row, width - len(s):] = 1
                # left padding shifts every real token right; positions must start at 0 at the first real token
                position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
                kwargs = dict(
                    input_ids=input_ids.to(device),
                    attention_mask=attn.to(device),
                    position_ids=position_ids.to(device),
                )
                keep = max_r + 1
                if use_keep:
                    kwargs["logits_to_keep"] = keep
                if _accepts(model, "use_cache"):
                    kwargs["use_cache"] = False
                out = model(**kwargs)
                logits = out.logits if hasattr(out, "logits") else out[0]
                logits = logits[:, -keep:, :].float()
                # logits at column j predict the token at column j+1; the response is the last n_resp tokens
                pred = logits[:, :-1, :]
                targets = input_ids[:, width - max_r:].to(pred.device)
                token_lp = pred.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(pred, dim=-1)
                cols = torch.arange(max_r, device=pred.device)
                n = torch.tensor(n_resp, device=pred.device)
                mask = cols.unsqueeze(0) >= (max_r - n).unsqueeze(1)
                # summed in float64 so long responses do not accumulate float32 rounding
                sums = (token_lp.double() * mask).sum(-1).cpu().tolist()
                for row, i in enumerate(idx):
                    results[i] = (float(sums[row]), int(n_resp[row]))
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def _reference_or_response(examples, responses):
    if responses is None:
        refs = [ex.meta.get("reference") for ex in examples]
        missing = [ex.index for ex, r in zip(examples, refs) if r is None]
        if missing:
            raise ValueError(f"no responses given and rows {missing[:5]} have no reference response")
        return refs
    if len(responses) != len(examples):
        raise ValueError(f"{len(examples)} examples but {len(responses)} responses")
    return list(responses)


def conditional_logprobs(
    model,
    tokenizer,
    examples: Sequence[Example],
    responses: Sequence[str] | None = None,
    fmt: PromptFormat | None = None,
    batch_size: int = 8,
) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """``(log p(y | x, c), log p(y | x))`` for each example's response.

    ``responses=None`` scores each example's reference response
    (``example.meta["reference"]``). Prompts are built with the same
    :func:`build_messages` as training, once with the example's context and once
    with it dropped. Feed the two lists to
    :func:`axolotl_mipo.evaluation.metrics.pointwise_mi`.
    """
    ys = _reference_or_response(examples, responses)
    with_ctx = [build_messages(ex.messages, ex.context, fmt) for ex in examples]
    without = [build_messages(ex.messages, None, fmt) for ex in examples]
    scored = response_logprobs(model, tokenizer, with_ctx + without, ys + ys, batch_size=batch_size)
    return scored[: len(ys)], scored[len(ys):]


def context_score_matrix(
    model,
    tokenizer,
    examples: Sequence[Example],
    responses: Sequence[str] | None,
    candidates: Sequence[Sequence[str]],
    fmt: PromptFormat | None = None,
    batch_size: int = 8,
) -> list[list[float]]:
    """``scores[i][k] = log p(y_i | x_i, candidates[i][k])`` for context identification.

    The response and its token count are the same across a row's candidates,
    so summed log-probs are comparable within a row (no length normalisation
    needed). Build ``candidates`` with
    :func:`axolotl_mipo.evaluation.metrics.build_candidate_sets`.
    """
    ys = _reference_or_response(examples, responses)
    if len(candidates) != len(examples):
        raise ValueError(f"{len(examples)} examples but {len(candidates)} candidate sets")
    prompts, flat_y, shape = [], [], []
    for ex, y, cands in zip(examples, ys, candidates):
        shape.append(len(cands))
        for c in cands:
            prompts.append(build_messages(ex.messages, c, fmt))
            flat_y.append(y)
    scored = response_logprobs(model, tokenizer, prompts, flat_y, batch_size=batch_size)
    out, pos = [], 0
    for k in shape:
        out.append([lp for lp, _ in scored[pos:pos + k]])
        pos += k
    return out


def mean_or_nan(xs: Sequence[float]) -> float:
    """Arithmetic mean; NaN for no values."""
    return sum(xs) / len(xs) if xs else float("nan")


def sample_std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n-1); 0 for a single value, NaN for none."""
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return 0.0
    m = mean_or_nan(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


# --------------------------------------------------------------------------- pointwise MI


@dataclass
class MIResult:
    """Pointwise conditional MI ``log p(y|x,c) - log p(y|x)``, in nats.

    ``mean`` is the estimate of the conditional MI I(Y; C | X) when the ``y``
    were sampled from the model under ``(x, c)``; for reference responses it is
    how much the context raises the likelihood of what the user actually wrote.
    ``per_token_mean`` divides each row's difference by its response length
    first (only when token counts were given) so long responses do not dominate.
    """

    mean: float
    std: float
    sem: float
    n: int
    per_row: list[float]
    per_token_mean: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _as_logps(values) -> tuple[list[float], list[int] | None]:
    logps, counts = [], []
    for v in values:
        if isinstance(v, (tuple, list)):
            logps.append(float(v[0]))
            counts.append(int(v[1]))
        else:
            logps.append(float(v))
            counts.append(-1)
    return logps, (counts if counts and all(c >= 0 for c in counts) else None)


def pointwise_mi(logp_with: Sequence, logp_without: Sequence) -> MIResult:
    """Mean and per-row ``logp_with - logp_without``: the pointwise conditional MI that MIPO
    (arXiv 2603.19294) maximises, ``log p(y | x, c) - log p(y | x)``.

    Accepts plain floats or the ``(logp, n_tokens)`` tuples that
    :func:`response_logprobs` returns (then
    ``per_token_mean`` is filled in too; rows with zero tokens are left out of it).
    """
    lw, cw = _as_logps(logp_with)
    lo, co = _as_logps(logp_without)
    if len(lw) != len(lo):
        raise ValueError(f"{len(lw)} conditional but {len(lo)} unconditional log-probs")
    if cw is not None and co is not None and cw != co:
        raise ValueError("token counts differ between the two scorings; the same responses must be scored")
    if any(not math.isfinite(x) for x in lw + lo):
        raise ValueError("log-probabilities must be finite")
    per_row = [a - b for a, b in zip(lw, lo)]
    n = len(per_row)
    std = sample_std(per_row)
    per_tok = None
    if cw is not None:
        vals = [d / c for d, c in zip(per_row, cw) if c > 0]
        per_tok = mean_or_nan(vals) if vals else None
    return MIResult(
        mean=mean_or_nan(per_row),
        std=std,
        sem=std / math.sqrt(n) if n > 1 else float("nan"),
        n=n,
        per_row=per_row,
        per_token_mean=per_tok,
    )
