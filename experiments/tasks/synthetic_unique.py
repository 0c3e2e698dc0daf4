"""A second synthetic personalization task, shaped like the public datasets: every user asks their own queries.

The first task (:mod:`experiments.tasks.synthetic`) gives every user the same ten queries. Public
personalization data (AlignX, LaMP, PRISM) looks different, and this task copies three of its traits:

* **No query is shared across users.** Each query is built from an ask, a time and a companion
  ("What could I do on a rainy Sunday with my sister?"); every combination is given to at most one
  user, so a query never says who asks it (none has a topic word) and the same string never appears
  under two contexts.
* **Context phrasings vary per row.** Each row states its user's four preferences in phrasings
  drawn afresh for that row, in a random order, with neutral persona sentences (a city, a job) mixed
  in, as a real profile or history differs from one row to the next. The same user therefore has
  many contexts with one meaning.
* **A held-out human-style pair per row.** Held-out rows carry ``human_chosen`` (a response that
  obeys all four of the user's preferences) and ``human_rejected`` (a response of a user who differs
  in one or two preferences, so it breaks exactly those), in the shape the dataset presets give
  :class:`~axolotl_mipo.data.example.Example` (``meta["human_chosen"]`` / ``meta["human_rejected"]``),
  so preference accuracy applies. Read the written files back with ``chosen_field: human_chosen``,
  ``rejected_field: human_rejected``, ``user_field: user_id`` and ``reference_field: reference``.

The preferences, their checkers and the reference answers are the first task's
(:func:`~experiments.tasks.synthetic.check_preferences`,
:func:`~experiments.tasks.synthetic.reference_response`). Rows also carry ``slot``, the phrase a
reference answer refers back to.

    python -m experiments.tasks.synthetic_unique OUT_DIR --users 32 --train 8 --heldout 2 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Sequence
from pathlib import Path

from axolotl_mipo.data.example import Example
from experiments.tasks import synthetic as S

_ASKS: tuple[str, ...] = (
    "What should I do {time}{who}?", "Give me an idea for {time}{who}.", "How could I spend {time}{who}?",
    "Any suggestions for {time}{who}?", "What is a good plan for {time}{who}?",
    "Help me plan {time}{who}.", "I am free {time}. What could I do{who}?", "What would you suggest for {time}{who}?",
)
_TIMES: tuple[str, ...] = (
    "this weekend", "tonight", "a rainy Sunday", "a free afternoon", "my day off", "the holidays",
    "Friday evening", "a long weekend", "next Saturday", "a quiet morning", "this month", "a sunny evening",
    "my birthday", "the first day of spring", "a slow Tuesday", "the school break",
)
_WHO: tuple[str, ...] = ("", " with my sister", " with friends", " alone", " with my kids", " with a colleague",
                         " with my partner", " with my neighbour")

# neutral persona sentences: realistic noise in a profile, with no word a checker looks for
_PERSONA: tuple[str, ...] = (
    "I live in {city}.", "I work as {job}.", "I moved to {city} last year.", "My job: {job}.",
    "I grew up near {city}.", "By day I am {job}.",
)
_CITIES = ("Leeds", "Porto", "Lyon", "Graz", "Utrecht", "Bergen", "Aarhus", "Bilbao", "Turin", "Cork")
_JOBS = ("a nurse", "an accountant", "a teacher", "an engineer", "a student", "a designer", "a librarian",
         "a pharmacist")
_EXTRA_PHRASES: dict[str, tuple[str, ...]] = {
    "short": ("Short replies suit me best.", "Brief answers, please."),
    "long": ("I enjoy reading long, thorough answers.", "Detailed explanations help me most."),
    "formal": ("A polite and formal style is what I expect.", "Formal wording, please."),
    "casual": ("Chat with me like a friend would.", "A relaxed, informal style suits me."),
    "cooking": ("Food and cooking are what I care about.", "Cooking is how I spend my free time."),
    "sports": ("I follow every sport I can.", "Sports fill most of my free time."),
    "music": ("Music is a big part of my life.", "I am always listening to music."),
    "travel": ("Travelling is what I love most.", "Trips and travel are my favourite thing."),
    "bullets": ("Bullet points make answers easier for me.", "I like answers as a list of bullet points."),
    "prose": ("I like answers written as ordinary paragraphs.", "No lists please, just sentences."),
}

__all__ = ["all_queries", "context_for_row", "make_unique_task", "split_rows", "to_examples"]


def all_queries() -> list[tuple[str, str]]:
    """Every (query, slot) this task can ask; each goes to at most one user."""
    out = []
    for ask, time, who in itertools.product(_ASKS, _TIMES, _WHO):
        query = ask.format(time=time, who=who)
        slot = time if not who else f"{time}{who.replace(' my ', ' your ')}"
        out.append((query, slot))
    return out


def context_for_row(prefs: dict[str, str], rng: random.Random) -> str:
    """One phrasing of the four preferences (from both phrase tables), shuffled, with 0-2 persona sentences."""
    sentences = [rng.choice(S._CONTEXT_PHRASES[prefs[d]] + _EXTRA_PHRASES[prefs[d]]) for d in S.DIMENSIONS]
    for _ in range(rng.randrange(3)):
        sentences.append(rng.choice(_PERSONA).format(city=rng.choice(_CITIES), job=rng.choice(_JOBS)))
    rng.shuffle(sentences)
    return " ".join(sentences)


def _rejected_user(user: S.SyntheticUser, by_prefs: dict, rng: random.Random) -> tuple[S.SyntheticUser, list[str]]:
    """A user differing from ``user`` in one or two preferences (the dimensions are returned)."""
    values = {"length": S.LENGTHS, "formality": S.FORMALITIES, "topic": S.TOPICS, "format": S.FORMATS}
    prefs = user.preferences()
    flip = rng.sample(S.DIMENSIONS, rng.choice((1, 2)))
    for d in flip:
        prefs[d] = rng.choice([v for v in values[d] if v != prefs[d]])
    key = tuple(prefs[d] for d in S.DIMENSIONS)
    other = by_prefs.get(key) or S.SyntheticUser(user_id="rejected", context="", **prefs)
    return other, sorted(flip)


def make_unique_task(n_users: int = 32, train_per_user: int = 8, heldout_per_user: int = 2,
                     seed: int = 0) -> list[dict]:
    """Rows ``{context, query, slot, reference, user_id, preferences, split}``; held-out rows also
    ``human_chosen``, ``human_rejected`` and ``rejected_breaks`` (the preferences the rejected one breaks).

    The same arguments give the same rows. ``split`` is ``train`` or ``heldout``: per user, the first
    ``train_per_user`` queries are training rows, the next ``heldout_per_user`` held out (a held-out row is
    a query training never saw, of a user training did see).
    """
    per_user = train_per_user + heldout_per_user
    if train_per_user < 0 or heldout_per_user < 0 or per_user < 1:
        raise ValueError("train_per_user and heldout_per_user must be >= 0, and at least one row per user")
    pool = all_queries()
    if n_users * per_user > len(pool):
        raise ValueError(f"{n_users} users x {per_user} queries needs {n_users * per_user} distinct queries; "
                         f"the task has {len(pool)}: lower --users or the queries per user")
    users = S.make_users(n_users, seed)
    by_prefs = {tuple(u.preferences()[d] for d in S.DIMENSIONS): u for u in users}
    rng = random.Random(f"{seed}-unique")
    queries = rng.sample(pool, n_users * per_user)
    rows = []
    for ui, user in enumerate(users):
        prefs = user.preferences()
        for qi, (query, slot) in enumerate(queries[ui * per_user:(ui + 1) * per_user]):
            row = {"context": context_for_row(prefs, rng), "query": query, "slot": slot,
                   "reference": S.reference_response(user, slot, rng), "user_id": user.user_id,
                   "preferences": prefs, "split": "train" if qi < train_per_user else "heldout"}
            if row["split"] == "heldout":
                other, broken = _rejected_user(user, by_prefs, rng)
                row["human_chosen"] = S.reference_response(user, slot, rng)
                row["human_rejected"] = S.reference_response(other, slot, rng)
                row["rejected_breaks"] = broken
            rows.append(row)
    return rows


def split_rows(rows: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) by the rows' ``split``."""
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "heldout"]


def to_examples(rows: Sequence[dict], source: str = "synthetic_unique") -> list[Example]:
    """Rows as :class:`Example`: reference, user, preferences and the human pair in ``meta``."""
    out = []
    for i, r in enumerate(rows):
        meta = {"reference": r["reference"], "user_id": r["user_id"], "preferences": r["preferences"]}
        if r.get("human_chosen") is not None:
            meta.update(human_chosen=r["human_chosen"], human_rejected=r["human_rejected"])
        out.append(Example(index=i, messages=(("user", r["query"]),), context=r["context"], source=source,
                           meta=meta))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the unique-query synthetic task as train.jsonl + heldout.jsonl.")
    p.add_argument("out_dir")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--train", type=int, default=8, help="training queries per user")
    p.add_argument("--heldout", type=int, default=2, help="held-out queries per user")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    train, heldout = split_rows(make_unique_task(a.users, a.train, a.heldout, a.seed))
    out = Path(a.out_dir)
    print(S.write_jsonl(train, out / "train.jsonl"), f"({len(train)} rows)")
    print(S.write_jsonl(heldout, out / "heldout.jsonl"), f"({len(heldout)} rows)")


if __name__ == "__main__":
    main()
