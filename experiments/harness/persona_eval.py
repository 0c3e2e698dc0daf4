"""Evaluation on the persona task's held-out rows (SmolLM2 and losses-and-rounds studies), per row.

:func:`persona_base_stage` evaluates the base model once (with the persona) and also samples its
responses WITHOUT the persona; :func:`preference_pairs` keeps the rows where the task's checkers order
the two, and :func:`pair_accuracy` scores any model on those pairs. :func:`evaluate_personas` is the
evaluation of an arm: MI, context identification at each K, and the checkers, per held-out row.
"""

from __future__ import annotations

import dataclasses

PREFS = ("language", "format", "max_words", "topic", "register", "all")


def persona_seed_rows(d, personas: dict, seed: int):
    """One seed's persona task (``personas``: the plan's ``train_users``, ``heldout_users``, ``queries_per_user``),
    whole users held out, validated and written to ``d/train.jsonl`` and ``d/heldout.jsonl``; ``(train, heldout)``."""
    from experiments.tasks import personas as Pe

    rows = Pe.make_personas(personas["train_users"] + personas["heldout_users"], personas["queries_per_user"], seed)
    train, heldout = Pe.split_by_user(rows, personas["heldout_users"], seed)
    Pe.validate_rows(train, "train")
    Pe.validate_rows(heldout, "heldout")
    Pe.write_jsonl(train, d / "train.jsonl")
    Pe.write_jsonl(heldout, d / "heldout.jsonl")
    return train, heldout


def persona_examples(rows):
    """The held-out rows as :class:`~axolotl_mipo.data.example.Example` (one user turn, the persona as context)."""
    from axolotl_mipo.data.example import Example

    return [Example(index=i, messages=(("user", r["query"]),), context=r["context"], source="heldout",
                    meta={"user_id": r["user_id"], "preferences": r["preferences"]})
            for i, r in enumerate(rows)]


def _mean_logp(model, tok, examples, responses, batch_size):
    from axolotl_mipo.data.prompts import build_messages
    from axolotl_mipo.scoring import response_logprobs

    scored = response_logprobs(model, tok, [build_messages(ex.messages, ex.context) for ex in examples],
                               list(responses), batch_size=batch_size)
    return [s / n if n else float("-inf") for s, n in scored]


def preference_pairs(heldout, with_c, without_c):
    """Rows where the checkers order the base's with-persona and without-persona responses."""
    from experiments.tasks.personas import check_response

    pairs = []
    for i, (r, a, b) in enumerate(zip(heldout, with_c, without_c)):
        sa, sb = (sum(check_response(y, r["preferences"]).values()) for y in (a, b))
        if sa != sb:
            better, worse = (a, b) if sa > sb else (b, a)
            pairs.append({"row": i, "better": better, "worse": worse, "better_is_with_persona": sa > sb})
    return pairs


def pair_accuracy(model, tok, examples, pairs, batch_size) -> list[int]:
    """Per pair: 1 when the model gives the better response the higher mean per-token log-probability."""
    if not pairs:
        return []
    ex = [examples[p["row"]] for p in pairs]
    lp = _mean_logp(model, tok, ex + ex, [p["better"] for p in pairs] + [p["worse"] for p in pairs], batch_size)
    n = len(pairs)
    return [int(lp[i] > lp[n + i]) for i in range(n)]


def persona_per_row(res, heldout) -> dict:
    """Per held-out row: ``mi``, ``acc@K<k>`` (0/1) and each checker's ``pref_<dimension>`` (0/1)."""
    from experiments.tasks.personas import check_response

    checks = [check_response(y, r["preferences"]) for y, r in zip(res.responses, heldout)]
    rows = {"mi": res.mi_per_row}
    for k, ident in res.extra.get("identified_per_row", {}).items():
        rows[f"acc@K{k}"] = [int(x) for x in ident]
    for d in PREFS[:-1]:
        rows[f"pref_{d}"] = [int(c[d]) for c in checks]
    rows["pref_all"] = [int(all(c.values())) for c in checks]
    return rows


def evaluate_personas(model, tok, heldout, ev: dict, seed: int) -> tuple[dict, list[str]]:
    """Responses sampled WITH the persona (``ev``: ``k``, ``max_new_tokens``, ``temperature``, ``top_p``,
    ``batch_size``), their figures and per-row values; and the responses."""
    from axolotl_mipo.evaluation.evaluate import evaluate_model
    from experiments.tasks.personas import persona_checker

    res = evaluate_model(model, tok, persona_examples(heldout), k_values=ev["k"], max_new_tokens=ev["max_new_tokens"],
                         temperature=ev["temperature"], top_p=ev["top_p"], seed=seed, batch_size=ev["batch_size"],
                         checker=persona_checker, progress=False)
    return {"figures": res.figures, "per_row": persona_per_row(res, heldout),
            "samples": res.extra.get("samples", [])}, res.responses


def persona_base_stage(base, heldout, ev: dict, seed: int, tok) -> dict:
    """The base model's evaluation, its no-persona responses, the checker-ordered pairs and its accuracy on them."""
    from axolotl_mipo.evaluation.evaluate import generate_responses, load_model

    model = load_model(str(base), device="cpu", dtype="float32")
    out, with_c = evaluate_personas(model, tok, heldout, ev, seed)
    no_persona = [dataclasses.replace(ex, context=None) for ex in persona_examples(heldout)]
    without = [t for t, _ in generate_responses(model, tok, no_persona, max_new_tokens=ev["max_new_tokens"],
                                                temperature=ev["temperature"], top_p=ev["top_p"], seed=seed,
                                                batch_size=ev["batch_size"], progress=False)]
    pairs = preference_pairs(heldout, with_c, without)
    out["pairs"] = pairs
    out["per_pair"] = {"pref_accuracy": pair_accuracy(model, tok, persona_examples(heldout), pairs,
                                                      ev["batch_size"])}
    out["responses"], out["responses_without_persona"] = with_c, without
    return out
