"""The weakly personalized tiny base model of the synthetic-task studies (first task, grid, POPI).

A tiny Llama (hidden 128, 2 layers) whose tokenizer is trained on the task's text, fine-tuned with a
plain torch loop (cross-entropy on response tokens only, tokenized as TRL tokenizes a conversation) on
examples drawn from the training rows like this:

* with probability ``P_CONTEXT = 1/2`` the prompt has NO context and the response is a fresh reference
  answer of a uniformly random user: the model learns the population's marginal ``p(y | x)``;
* otherwise the prompt has the user's context, and the response is that user's own reference answer
  with probability ``ALPHA = 0.25``, and a uniformly random user's answer otherwise.

So the best this model can do is ``p(y | x, c) = alpha p_user(y) + (1 - alpha) p_marginal(y)``: it
follows the context, but weakly, by design of its data, not by stopping training early. It stands in
for a real instruct model that reads a user profile but answers generically most of the time. Nothing
here knows about MIPO.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from experiments.harness.stages import logger

ALPHA = 0.25           # share of context rows whose response is the user's own
P_CONTEXT = 0.5        # share of SFT examples that show the context at all
SFT_STEPS = 200
SFT_BATCH = 32
SFT_LR = 3e-3
HIDDEN, LAYERS = 128, 2

log = logger("weak_base")


def train_weak_base(seed: int, rows, users, out_dir: Path, threads: int, steps: int = SFT_STEPS) -> dict:
    """Build the tiny model, fine-tune it to follow the context weakly, save it (and its tokenizer) in ``out_dir``.

    ``rows`` are the training rows of the first synthetic task or of the unique-query one, ``users``
    their :class:`~experiments.tasks.synthetic.SyntheticUser` by id. A row's own ``context`` and ``slot`` are used
    when present (the first task's rows have one context per user and a slot per query). Returns the
    settings, the final loss, the example counts and the parameter count.
    """
    import torch

    from axolotl_mipo.data.prompts import build_messages
    from axolotl_mipo.scoring import tokenize_prompt_response
    from axolotl_mipo.testing.tiny import TinyModelSpec, build_model, build_tokenizer
    from experiments.tasks import synthetic as S

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    slot = dict(S.QUERIES)
    ulist = sorted(users.values(), key=lambda u: u.user_id)
    crng = random.Random(f"{seed}-corpus")
    corpus = [u.context for u in ulist] + [q for q, _ in S.QUERIES]
    slots = [s for _, s in S.QUERIES]
    if any("slot" in r for r in rows):  # the unique-query task: its own queries, slots and per-row contexts
        seen = set(corpus)
        corpus += [t for t in dict.fromkeys(x for r in rows for x in (r["context"], r["query"])) if t not in seen]
        slots = sorted({r["slot"] for r in rows})
    corpus += [S.reference_response(crng.choice(ulist), crng.choice(slots), crng) for _ in range(2000)]
    tok = build_tokenizer(1024, seed, corpus=corpus)
    spec = TinyModelSpec(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=2 * HIDDEN, seed=seed)
    model = build_model(tok, spec)
    rng = random.Random(f"{seed}-sft")
    counts = {"no_context": 0, "own": 0, "other": 0}

    def sample():
        r = rng.choice(rows)
        user = users[r["user_id"]]
        if rng.random() < P_CONTEXT:
            ctx = r["context"]  # the user's only context in the first task; this row's phrasing in the second
            if rng.random() < ALPHA:
                resp_user = user
                counts["own"] += 1
            else:
                resp_user = rng.choice(ulist)  # may be the user itself: p(own) = alpha + (1 - alpha) / 32
                counts["other"] += 1
        else:
            ctx, resp_user = None, rng.choice(ulist)
            counts["no_context"] += 1
        y = S.reference_response(resp_user, r.get("slot") or slot[r["query"]], rng)
        p_ids, r_ids, _ = tokenize_prompt_response(tok, build_messages([("user", r["query"])], ctx), y)
        return p_ids, r_ids

    opt = torch.optim.AdamW(model.parameters(), lr=SFT_LR, weight_decay=0.0)
    warm = 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    model.train()
    losses = []
    t0 = time.time()
    for step in range(steps):
        batch = [sample() for _ in range(SFT_BATCH)]
        width = max(len(p) + len(r) for p, r in batch)
        ids = torch.full((SFT_BATCH, width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((SFT_BATCH, width), -100, dtype=torch.long)
        att = torch.zeros((SFT_BATCH, width), dtype=torch.long)
        for i, (p, r) in enumerate(batch):
            seq = p + r
            ids[i, :len(seq)] = torch.tensor(seq)
            att[i, :len(seq)] = 1
            labels[i, len(p):len(seq)] = torch.tensor(r)
        loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"seed {seed}: SFT step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    model.eval()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return {"steps": steps, "batch": SFT_BATCH, "lr": SFT_LR, "alpha": ALPHA, "p_context": P_CONTEXT,
            "final_loss": sum(losses[-10:]) / 10, "examples": counts, "seconds": time.time() - t0,
            "params": sum(p.numel() for p in model.parameters())}
