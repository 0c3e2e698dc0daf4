"""A synthetic personalization task generated in code (nothing downloaded).

Each user has four preferences that a few lines of code can check in any
response:

* length — ``short`` (at most :data:`SHORT_MAX_WORDS` words) or ``long`` (at
  least :data:`LONG_MIN_WORDS`);
* formality — ``formal`` (a formal marker word, no casual marker, no ``!``) or
  ``casual`` (a casual marker, no formal marker);
* topic — ``cooking``, ``sports``, ``music`` or ``travel`` (a keyword of the
  topic and none of any other topic);
* format — ``bullets`` (two or more ``- `` lines) or ``prose`` (no list lines).

The user's context states the preferences in plain English, in phrasings
drawn per user; the queries are topic-neutral, so only the context tells a
model what a good answer looks like, which is what MIPO is meant to exploit and
what context identification and the checkers measure. Reference responses are
templated from a small vocabulary (the tiny test tokenizer's) and always pass
their own user's checkers; they fail at least one checker of any other user.

Rows are written in the ``context_query`` format with the fields ``context``,
``query``, ``reference`` and ``user_id`` (plus ``preferences``, ignored by the
row reader): set ``reference_field: reference`` to keep the references.

    python -m experiments.tasks.synthetic OUT.jsonl --users 16 --queries 4 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from axolotl_mipo.data.example import Example
from axolotl_mipo.evaluation.metrics import preference_satisfaction, tokenize

LENGTHS = ("short", "long")
FORMALITIES = ("formal", "casual")
TOPICS = ("cooking", "sports", "music", "travel")
FORMATS = ("bullets", "prose")
DIMENSIONS = ("length", "formality", "topic", "format")
MAX_USERS = len(LENGTHS) * len(FORMALITIES) * len(TOPICS) * len(FORMATS)

SHORT_MAX_WORDS = 30
LONG_MIN_WORDS = 50

TOPIC_KEYWORDS: dict[str, frozenset[str]] = {
    "cooking": frozenset("cook cooking cooked recipe recipes kitchen dinner meal meals bake bread soup pasta "
                         "curry ingredients food chef".split()),
    "sports": frozenset("football match game team tennis race basketball sport sports running workout gym "
                        "swimming club".split()),
    "music": frozenset("music jazz song songs guitar piano concert band album playlist choir sing drums".split()),
    "travel": frozenset("travel trip city town museum flight journey coast beach tour harbour castle".split()),
}
FORMAL_MARKERS = frozenset("recommend furthermore additionally worthwhile regards certainly moreover".split())
CASUAL_MARKERS = frozenset("hey totally awesome cool super yeah gonna blast".split())

_ACTIONS: dict[str, tuple[str, ...]] = {
    "cooking": (
        "cook a simple pasta dinner at home", "try a new soup recipe", "bake fresh bread in your kitchen",
        "invite friends over for a home cooked meal", "learn to cook a spicy curry",
        "buy fresh ingredients at a food market", "take a short cooking class with a local chef",
        "plan your meals for next week and try new recipes",
    ),
    "sports": (
        "play a football match with friends", "go running in the park", "watch the big game with your team",
        "join a local tennis club", "sign up for a short charity race", "practice basketball with a friend",
        "do a quick workout at the gym", "go swimming at the sports centre",
    ),
    "music": (
        "listen to a classic jazz album", "learn a new song on the guitar", "go to a live music concert",
        "make a playlist of your favourite songs", "sing with a local choir", "practice piano for twenty minutes",
        "see a small band play in a bar", "try playing the drums",
    ),
    "travel": (
        "plan a weekend trip to a nearby city", "explore a new town by bus", "visit a museum in another city",
        "book a cheap flight to the coast", "walk around an old harbour town", "take a guided tour of a castle",
        "spend a day at the beach", "pack a small bag for a short journey",
    ),
}

# (query, the slot a response refers back to) — no topic words, so the query alone says nothing about the user
QUERIES: tuple[tuple[str, str], ...] = (
    ("What should I do this weekend?", "this weekend"),
    ("Give me an idea for tonight.", "tonight"),
    ("How can I relax after a long day?", "unwinding"),
    ("What is a good hobby to pick up?", "a new hobby"),
    ("How should I spend a free afternoon?", "a free afternoon"),
    ("What could I do with friends on Saturday?", "Saturday with friends"),
    ("Suggest something to try this month.", "this month"),
    ("How do I make my evenings more fun?", "your evenings"),
    ("What can I do on my day off?", "your day off"),
    ("Any plans you would suggest for the holidays?", "the holidays"),
)

_CONTEXT_PHRASES: dict[str, tuple[str, ...]] = {
    "short": ("I like short answers.", "Please keep your answers brief, one or two sentences.",
              "I prefer short replies."),
    "long": ("I like long detailed explanations.", "Please give me long, detailed answers.",
             "I prefer thorough replies with plenty of detail."),
    "formal": ("Please use formal language.", "I prefer a formal, polite tone.", "Write to me formally."),
    "casual": ("I like casual chat.", "Talk to me in a casual, relaxed way.",
               "Keep the tone informal and friendly."),
    "cooking": ("I love cooking.", "My favourite hobby is cooking.", "I spend a lot of time in the kitchen."),
    "sports": ("I am a big sports fan.", "I love playing and watching sports.", "Sport is my passion."),
    "music": ("I love music.", "Jazz music and songs are my passion.", "I play guitar and love music."),
    "travel": ("I love to travel.", "Travel is my passion.", "I am always planning my next trip."),
    "bullets": ("I prefer bullet points.", "Please format answers as bullet points.",
                "Lists with bullet points work best for me."),
    "prose": ("Please answer in plain prose, without lists.", "I prefer flowing paragraphs to bullet points.",
              "Write in full sentences, no bullet points."),
}

_FORMAL_OPEN = "For {slot}, I would recommend that you {a}."
_CASUAL_OPEN = "Hey, for {slot} you should totally {a}!"
_FORMAL_MORE = ("It may also be worthwhile to {a}.", "Furthermore, you could {a}.",
                "Additionally, you might {a}.", "Another good option is to {a}.", "Moreover, you may {a}.")
_CASUAL_MORE = ("Or just {a}, it is awesome!", "Also, why not {a}? So cool!", "You could {a}, super fun!",
                "Yeah, {a} and enjoy it!", "Or {a}, totally worth it!")
_FORMAL_BULLET_OPEN = "For {slot}, I would recommend the following:"
_CASUAL_BULLET_OPEN = "Hey, for {slot} here are some cool ideas!"
_FORMAL_CLOSE = "I hope these suggestions are helpful. Kind regards."
_CASUAL_CLOSE = "Have a blast, you are gonna love it!"

_BULLET_LINE = re.compile(r"^\s*(?:[-*\u2022]\s+|\d+[.)]\s+)")


@dataclass(frozen=True)
class SyntheticUser:
    user_id: str
    length: str
    formality: str
    topic: str
    format: str
    context: str

    def preferences(self) -> dict[str, str]:
        return {d: getattr(self, d) for d in DIMENSIONS}


def _context_for(prefs: Mapping[str, str], rng: random.Random) -> str:
    sentences = [rng.choice(_CONTEXT_PHRASES[prefs[d]]) for d in DIMENSIONS]
    rng.shuffle(sentences)
    return " ".join(sentences)


def make_users(n_users: int, seed: int = 0) -> list[SyntheticUser]:
    """``n_users`` users with pairwise different preference combinations (at most :data:`MAX_USERS`)."""
    if not 1 <= n_users <= MAX_USERS:
        raise ValueError(f"n_users must be between 1 and {MAX_USERS} (the number of distinct preference sets)")
    rng = random.Random(seed)
    combos = rng.sample(list(itertools.product(LENGTHS, FORMALITIES, TOPICS, FORMATS)), n_users)
    users = []
    for i, combo in enumerate(combos):
        prefs = dict(zip(DIMENSIONS, combo))
        users.append(SyntheticUser(user_id=f"user_{i:03d}", context=_context_for(prefs, rng), **prefs))
    return users


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _word_count(text: str) -> int:
    return len(tokenize(text))


def reference_response(user: SyntheticUser, slot: str, rng: random.Random) -> str:
    """A response that obeys every preference of ``user`` (checked before it is returned)."""
    actions = list(_ACTIONS[user.topic])
    rng.shuffle(actions)
    formal = user.formality == "formal"
    if user.format == "bullets":
        lines = [(_FORMAL_BULLET_OPEN if formal else _CASUAL_BULLET_OPEN).format(slot=slot)]
        end = "." if formal else "!"
        if user.length == "short":
            # the two shortest keep a short answer under the word limit whatever the slot
            for a in sorted(actions[:4], key=len)[:2]:
                lines.append(f"- {_cap(a)}{end}")
        else:
            for a in actions:
                lines.append(f"- {_cap(a)}{end}")
                if _word_count("\n".join(lines)) >= LONG_MIN_WORDS:
                    break
            lines.append(_FORMAL_CLOSE if formal else _CASUAL_CLOSE)
        text = "\n".join(lines)
    else:
        sentences = [(_FORMAL_OPEN if formal else _CASUAL_OPEN).format(slot=slot, a=actions[0])]
        if user.length == "long":
            more = list(_FORMAL_MORE if formal else _CASUAL_MORE)
            rng.shuffle(more)
            for template, a in zip(itertools.cycle(more), actions[1:]):
                sentences.append(template.format(a=a))
                if _word_count(" ".join(sentences)) >= LONG_MIN_WORDS:
                    break
            sentences.append(_FORMAL_CLOSE if formal else _CASUAL_CLOSE)
        text = " ".join(sentences)
    failed = [d for d, ok in check_preferences(text, user).items() if not ok]
    if failed:  # a template edit that breaks a checker must fail loudly, not ship a bad reference
        raise RuntimeError(f"synthetic reference for {user.user_id} fails its own checks {failed}: {text!r}")
    return text


def make_task(n_users: int = 8, queries_per_user: int = 4, seed: int = 0) -> list[dict]:
    """Rows ``{context, query, reference, user_id, preferences}``; the same seed gives the same rows."""
    if not 1 <= queries_per_user <= len(QUERIES):
        raise ValueError(f"queries_per_user must be between 1 and {len(QUERIES)}")
    users = make_users(n_users, seed)
    rng = random.Random(f"{seed}-responses")
    rows = []
    for user in users:
        for query, slot in rng.sample(QUERIES, queries_per_user):
            rows.append({
                "context": user.context,
                "query": query,
                "reference": reference_response(user, slot, rng),
                "user_id": user.user_id,
                "preferences": user.preferences(),
            })
    return rows


def write_jsonl(rows: Sequence[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def users_from_rows(rows: Sequence[Mapping]) -> dict[str, SyntheticUser]:
    """The users behind task rows (read back from JSONL), by ``user_id``."""
    users: dict[str, SyntheticUser] = {}
    for row in rows:
        users.setdefault(row["user_id"], SyntheticUser(
            user_id=row["user_id"], context=row["context"], **{d: row["preferences"][d] for d in DIMENSIONS}))
    return users


def to_examples(rows: Sequence[Mapping], source: str = "synthetic") -> list[Example]:
    """Rows as :class:`Example`, the reference and user id in ``meta`` (as the row reader would keep them)."""
    return [
        Example(index=i, messages=(("user", r["query"]),), context=r["context"], source=source,
                meta={"reference": r["reference"], "user_id": r["user_id"]})
        for i, r in enumerate(rows)
    ]


def _prefs(user: SyntheticUser | Mapping[str, str]) -> Mapping[str, str]:
    return user.preferences() if isinstance(user, SyntheticUser) else user


def check_preferences(response: str, user: SyntheticUser | Mapping[str, str]) -> dict[str, bool]:
    """Whether ``response`` obeys each of ``user``'s preferences (a user, or its ``preferences`` dict)."""
    prefs = _prefs(user)
    words = tokenize(response)
    vocab = set(words)
    n = len(words)
    formal_hit = bool(vocab & FORMAL_MARKERS)
    casual_hit = bool(vocab & CASUAL_MARKERS)
    lines = [ln for ln in response.splitlines() if ln.strip()]
    bullet_lines = sum(bool(_BULLET_LINE.match(ln)) for ln in lines)
    own = TOPIC_KEYWORDS[prefs["topic"]]
    others = set().union(*(kw for t, kw in TOPIC_KEYWORDS.items() if t != prefs["topic"]))
    return {
        "length": (1 <= n <= SHORT_MAX_WORDS) if prefs["length"] == "short" else n >= LONG_MIN_WORDS,
        "formality": (formal_hit and not casual_hit and "!" not in response)
        if prefs["formality"] == "formal" else (casual_hit and not formal_hit),
        "topic": bool(vocab & own) and not (vocab & others),
        "format": bullet_lines >= 2 if prefs["format"] == "bullets" else (n > 0 and bullet_lines == 0),
    }


def synthetic_preferences(context: str) -> dict[str, str] | None:
    """The synthetic task's preferences, read back from a context built by its phrase table (else ``None``)."""
    prefs: dict[str, str] = {}
    for value, phrases in _CONTEXT_PHRASES.items():
        if any(ph in context for ph in phrases):
            dim = next(d for d, vals in (("length", LENGTHS), ("formality", FORMALITIES),
                                         ("topic", TOPICS), ("format", FORMATS)) if value in vals)
            if prefs.get(dim, value) != value:
                return None
            prefs[dim] = value
    return prefs if set(prefs) == set(DIMENSIONS) else None


def synthetic_checker(responses: Sequence[str], examples: Sequence[Example]) -> dict[str, float]:
    """Preference satisfaction on the synthetic task: share of responses obeying each preference, and ``all``.

    Preferences come from ``meta['preferences']`` or are read back from the
    context text; when some row has neither, nothing is reported.
    """
    prefs = [ex.meta.get("preferences") or synthetic_preferences(ex.context or "") for ex in examples]
    if any(p is None for p in prefs):
        return {}
    return preference_satisfaction(responses, prefs, check_preferences, DIMENSIONS)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the synthetic personalization task as JSONL.")
    p.add_argument("out")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rows = make_task(a.users, a.queries, a.seed)
    print(write_jsonl(rows, a.out), f"({len(rows)} rows)")


if __name__ == "__main__":
    main()
