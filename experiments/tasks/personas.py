"""Personas for a real instruct model, with preferences that code can check in generated text.

The synthetic task (:mod:`experiments.tasks.synthetic`) is written for a
tiny model trained on its own templates; this set is for a real assistant
(SmolLM2-135M-Instruct), asked everyday questions by users who state five
preferences in their system message:

* ``language`` — ``en``, ``fr`` or ``es``: the answer's function words are
  mostly of that language (:func:`detect_language`);
* ``format`` — ``bullets`` (two or more list lines) or ``prose`` (none);
* ``max_words`` — 20 or 50: the answer has 1 to ``max_words`` words;
* ``topic`` — one of :data:`TOPICS`: the answer contains a word of the
  topic, in any of the three languages (the user asks for answers related to
  their hobby);
* ``register`` — ``formal`` (no contraction, no ``!``, no casual marker) or
  ``casual`` (at least one of them).

Queries are everyday questions without a topic, built from templates x
subjects and dealt out so that each query string belongs to ONE user: the
query alone says nothing about who asks, and a held-out user's queries were
never seen in training. Half the users ask for English answers (a 135M model
writes French and Spanish poorly: a language preference it cannot meet would
dominate every "all preferences" figure).

The context states the preferences in sentences drawn from :data:`_PHRASES`,
so :func:`preferences_from_context` reads them back from any context this
module wrote (``eval --checker experiments.tasks.personas:persona_checker``); rows also carry them as
``preferences``. :func:`validate_rows` is the gate for sets written elsewhere:
a row without the checkable fields is an error naming the row.

    python -m experiments.tasks.personas OUT_DIR --train-users 32 --heldout-users 16 --queries 8 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from axolotl_mipo.evaluation.metrics import preference_satisfaction

LANGUAGES = ("en", "fr", "es")
FORMATS = ("bullets", "prose")
MAX_WORDS = (20, 50)
REGISTERS = ("formal", "casual")
TOPICS = ("cooking", "gardening", "football", "music", "travel", "programming", "dogs", "astronomy")
DIMENSIONS = ("language", "format", "max_words", "topic", "register")

LANGUAGE_NAMES = {"en": "English", "fr": "French", "es": "Spanish"}

# function words that mark a language (none shared between two of the lists)
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are you your of to with this that it for be can what have will".split()),
    "fr": frozenset("le les et est vous votre des une pour avec dans du pas je ce sont au aux qui sur "
                    "il elle nous être peut".split()),
    "es": frozenset("el los las y es usted su una para con por del muy pero como sus está son al más "
                    "puede ser tiene".split()),
}

TOPIC_WORDS: dict[str, frozenset[str]] = {
    "cooking": frozenset("cook cooking cooked recipe recipes kitchen meal meals dish dishes food chef bake baking "
                         "cuisine recette recettes cuisiner plat repas cocina receta recetas cocinar comida "
                         "plato".split()),
    "gardening": frozenset("garden gardens gardening plant plants planting flower flowers soil seeds seed "
                           "jardin jardinage plante plantes fleurs jardín planta plantas flores".split()),
    "football": frozenset("football soccer match team teams goal goals ball player players "
                          "équipe ballon joueur fútbol futbol equipo partido balón jugador".split()),
    "music": frozenset("music musical song songs guitar piano melody band singing sing "
                       "musique chanson chansons guitare música musica canción canciones guitarra".split()),
    "travel": frozenset("travel traveling travelling trip trips journey flight destination suitcase "
                        "voyage voyages voyager viaje viajes viajar".split()),
    "programming": frozenset("code coding program programs programming software python computer bug bugs "
                             "programmation logiciel ordinateur programación código ordenador".split()),
    "dogs": frozenset("dog dogs puppy puppies pet pets leash chien chiens chiot perro perros mascota".split()),
    "astronomy": frozenset("star stars planet planets telescope sky space moon astronomy galaxy "
                           "étoile étoiles planète ciel lune estrella estrellas planeta cielo luna".split()),
}

CASUAL_MARKERS = frozenset("hey hi cool awesome gonna wanna yeah super guys lol btw stuff buddy totally "
                           "salut génial cool hola genial guay".split())
_CONTRACTION = re.compile(r"\b\w+(?:n't|'re|'ve|'ll|'m|'d)\b|\b(?:it|that|there|what|here|let|he|she)'s\b", re.I)
_BULLET_LINE = re.compile(r"^\s*(?:[-*\u2022+]\s+|\d+[.)]\s+)")
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*", re.UNICODE)

_PERSONAS: dict[str, tuple[str, ...]] = {
    "cooking": ("I am a home cook who spends every evening in the kitchen.",
                "I run a small bakery and think about food all day."),
    "gardening": ("I am a retired teacher who loves my vegetable garden.",
                  "I grow flowers and plants on my balcony."),
    "football": ("I coach a youth football team on weekends.", "I never miss a football match of my club."),
    "music": ("I am a music student who plays the guitar.", "I sing in a band and love every kind of music."),
    "travel": ("I work remotely and travel to a new country every few months.",
               "I am a flight attendant who is always on a trip."),
    "programming": ("I am a software developer who writes Python every day.",
                    "I am learning programming and love building small apps."),
    "dogs": ("I have two dogs and walk them every morning.", "I volunteer at a dog shelter."),
    "astronomy": ("I am an amateur astronomer with a telescope in my garden.",
                  "I love looking at the stars and planets at night."),
}

# one sentence per preference value; the {x} slots are filled from the user's preferences
_PHRASES: dict[str, tuple[str, ...]] = {
    "language": ("Always answer in {language}.", "Please reply in {language} only.",
                 "Write your answers in {language}."),
    "bullets": ("Format every answer as a bulleted list.", "Answer with bullet points.",
                "Please use bullet points, one idea per line."),
    "prose": ("Answer in plain prose, never as a list.", "Write in full sentences, without bullet points.",
              "Please reply in a short paragraph, with no lists."),
    "max_words": ("Keep every answer under {max_words} words.", "Never use more than {max_words} words.",
                  "Answers must stay within {max_words} words."),
    "topic": ("Relate every answer to {topic}.", "Connect your advice to my love of {topic}.",
              "Mention {topic} in your answers."),
    "formal": ("Use a formal tone, with no contractions or exclamation marks.",
               "Be formal and polite; avoid slang and contractions.",
               "Address me formally, as in a professional letter."),
    "casual": ("Talk to me casually, like a friend, contractions and slang welcome!",
               "Keep it casual and chatty, say hey and have fun!",
               "Be relaxed and informal, like texting a buddy."),
}

TEMPLATES = (
    "How can I get better at {s}?",
    "Any tips for {s}?",
    "What is the easiest way to start {s}?",
    "What mistakes do people make when {s}?",
    "How much time should I spend {s} each week?",
    "Why is {s} worth doing?",
)
SUBJECTS = (
    "waking up early", "saving money", "cleaning the bathroom", "doing laundry", "cooking on a budget",
    "falling asleep", "drinking more water", "keeping my desk tidy", "planning my week", "reading more books",
    "learning a language", "making new friends", "writing emails", "staying focused", "taking breaks at work",
    "walking every day", "stretching in the morning", "shopping for groceries", "meal prepping",
    "decorating a small flat", "fixing a leaky tap", "painting a room", "organising my wardrobe",
    "packing a suitcase", "planning a birthday party", "buying a used car", "riding a bike to work",
    "keeping houseplants alive", "journaling", "meditating", "speaking in public", "asking for a raise",
    "preparing for an interview", "managing stress", "calling old friends", "hosting dinner guests",
    "cutting down on sugar", "using less plastic", "recycling at home", "repairing clothes", "ironing shirts",
    "washing the car", "keeping a budget", "paying off debt", "choosing a phone plan", "backing up photos",
    "learning to swim", "running a first 5k", "lifting weights", "doing yoga at home", "getting more sunlight",
    "spending less time on my phone", "learning to draw", "taking better photos", "writing a diary",
    "studying for exams", "remembering names", "keeping a routine", "cleaning the fridge", "baking bread",
    "sewing a button", "assembling furniture", "moving house", "sharing a flat", "talking to neighbours",
    "volunteering", "donating old clothes", "planning a picnic", "visiting a museum", "going to bed on time",
    "eating more vegetables", "cooking breakfast", "brewing good coffee", "making tea", "writing thank-you notes",
    "wrapping presents", "choosing a gift", "planning a weekend", "relaxing on Sunday", "getting up on Monday",
)
MAX_QUERIES = len(TEMPLATES) * len(SUBJECTS)


class PersonaSetError(ValueError):
    """A persona row lacks (or has an unusable) checkable preference; the message names the row."""


def _topic_name(topic: str) -> str:
    return topic


def _combos(languages: Sequence[str]) -> list[tuple]:
    return list(itertools.product(languages, FORMATS, MAX_WORDS, TOPICS, REGISTERS))


def make_users(n_users: int, seed: int = 0) -> list[dict]:
    """``n_users`` users with pairwise different preferences; half (rounded up) want English answers."""
    n_en = (n_users + 1) // 2
    en, other = _combos(("en",)), _combos(("fr", "es"))
    if n_users < 1 or n_en > len(en) or n_users - n_en > len(other):
        raise ValueError(f"n_users must be between 1 and {2 * len(en)}")
    rng = random.Random(f"{seed}-personas")
    combos = rng.sample(en, n_en) + rng.sample(other, n_users - n_en)
    rng.shuffle(combos)
    users = []
    for i, combo in enumerate(combos):
        prefs = dict(zip(DIMENSIONS, combo))
        users.append({"user_id": f"persona_{i:03d}", "preferences": prefs, "context": _context_for(prefs, rng)})
    return users


def _context_for(prefs: Mapping, rng: random.Random) -> str:
    values = {"language": LANGUAGE_NAMES[prefs["language"]], "max_words": prefs["max_words"],
              "topic": _topic_name(prefs["topic"])}
    rules = [rng.choice(_PHRASES["language"]), rng.choice(_PHRASES[prefs["format"]]),
             rng.choice(_PHRASES["max_words"]), rng.choice(_PHRASES["topic"]), rng.choice(_PHRASES[prefs["register"]])]
    rng.shuffle(rules)
    text = " ".join([rng.choice(_PERSONAS[prefs["topic"]]), *rules])
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), text)


def make_personas(n_users: int, queries_per_user: int, seed: int = 0) -> list[dict]:
    """Rows ``{context, query, user_id, preferences}``; each query string belongs to one user only."""
    if n_users * queries_per_user > MAX_QUERIES:
        raise ValueError(f"{n_users} users x {queries_per_user} queries needs more than the {MAX_QUERIES} "
                         "distinct queries")
    users = make_users(n_users, seed)
    rng = random.Random(f"{seed}-queries")
    pool = [t.format(s=s) for t, s in itertools.product(TEMPLATES, SUBJECTS)]
    rng.shuffle(pool)
    rows = []
    for u, user in enumerate(users):
        for query in pool[u * queries_per_user:(u + 1) * queries_per_user]:
            rows.append({"context": user["context"], "query": query, "user_id": user["user_id"],
                         "preferences": dict(user["preferences"])})
    return rows


def split_by_user(rows: Sequence[Mapping], n_heldout_users: int, seed: int = 0) -> tuple[list, list]:
    """(train, held-out): whole users are held out, so evaluation sees new people asking new questions."""
    users = sorted({r["user_id"] for r in rows})
    if not 0 < n_heldout_users < len(users):
        raise ValueError(f"n_heldout_users must be between 1 and {len(users) - 1}")
    held = set(random.Random(f"{seed}-split").sample(users, n_heldout_users))
    return [dict(r) for r in rows if r["user_id"] not in held], [dict(r) for r in rows if r["user_id"] in held]


# ------------------------------------------------------------------ checkers


def words(text: str) -> list[str]:
    return [w.lower().replace("\u2019", "'") for w in _WORD.findall(text)]


def detect_language(text: str) -> str | None:
    """The language whose function words occur most often (``None``: no function word, or a tie)."""
    vocab = words(text)
    counts = {lang: sum(w in sw for w in vocab) for lang, sw in _STOPWORDS.items()}
    best = max(counts.values())
    if best == 0:
        return None
    top = [lang for lang, c in counts.items() if c == best]
    return top[0] if len(top) == 1 else None


def check_response(response: str, prefs: Mapping) -> dict[str, bool]:
    """Whether ``response`` obeys each of the five preferences."""
    ws = words(response)
    vocab = {w.strip("'") for w in ws}
    lines = [ln for ln in response.splitlines() if ln.strip()]
    bullets = sum(bool(_BULLET_LINE.match(ln)) for ln in lines)
    casual = bool(vocab & CASUAL_MARKERS) or "!" in response or "¡" in response or bool(_CONTRACTION.search(
        response.replace("\u2019", "'")))
    return {
        "language": detect_language(response) == prefs["language"],
        "format": bullets >= 2 if prefs["format"] == "bullets" else (bool(ws) and bullets == 0),
        "max_words": 1 <= len(ws) <= int(prefs["max_words"]),
        "topic": bool(vocab & TOPIC_WORDS[prefs["topic"]]),
        "register": casual if prefs["register"] == "casual" else (bool(ws) and not casual),
    }


# ------------------------------------------------------------------ reading back


def _phrase_regex(phrase: str) -> re.Pattern:
    slots = {"language": r"(?P<language>English|French|Spanish)", "max_words": r"(?P<max_words>\d+)",
             "topic": r"(?P<topic>" + "|".join(TOPICS) + ")"}
    parts = re.split(r"(\{\w+\})", phrase)
    return re.compile("".join(slots[p[1:-1]] if p.startswith("{") else re.escape(p) for p in parts))


_READERS = [(key, _phrase_regex(ph)) for key, phrases in _PHRASES.items() for ph in phrases]
_NAME_TO_LANG = {v: k for k, v in LANGUAGE_NAMES.items()}


def preferences_from_context(context: str) -> dict | None:
    """The five preferences stated by a context this module wrote (``None`` when any is missing or doubled)."""
    prefs: dict = {}
    for key, rx in _READERS:
        m = rx.search(context)
        if not m:
            continue
        if key in ("bullets", "prose"):
            found = {"format": key}
        elif key in REGISTERS:
            found = {"register": key}
        elif key == "language":
            found = {"language": _NAME_TO_LANG[m["language"]]}
        elif key == "max_words":
            found = {"max_words": int(m["max_words"])}
        else:
            found = {"topic": m["topic"]}
        for d, v in found.items():
            if prefs.get(d, v) != v:
                return None
            prefs[d] = v
    return prefs if set(prefs) == set(DIMENSIONS) else None


def validate_preferences(prefs, where: str) -> dict:
    """``prefs`` as checked values; a missing or unusable field is a :class:`PersonaSetError` naming ``where``."""
    if not isinstance(prefs, Mapping):
        raise PersonaSetError(f"{where}: no 'preferences' object with the checkable fields {list(DIMENSIONS)} "
                              "(write the set with `python -m experiments.tasks.personas`)")
    missing = [d for d in DIMENSIONS if d not in prefs]
    if missing:
        raise PersonaSetError(f"{where}: preferences lack {missing}; the checkers need all of {list(DIMENSIONS)}")
    allowed = {"language": LANGUAGES, "format": FORMATS, "topic": TOPICS, "register": REGISTERS}
    for d, vals in allowed.items():
        if prefs[d] not in vals:
            raise PersonaSetError(f"{where}: preferences.{d} is {prefs[d]!r}; expected one of {list(vals)}")
    mw = prefs["max_words"]
    if isinstance(mw, bool) or not isinstance(mw, int) or mw < 1:
        raise PersonaSetError(f"{where}: preferences.max_words is {mw!r}; expected a positive integer")
    return {d: prefs[d] for d in DIMENSIONS}


def validate_rows(rows: Sequence[Mapping], source: str = "persona set") -> list[dict]:
    """Rows with ``context``, ``query``, ``user_id`` and checkable ``preferences``, else an error naming the row."""
    if not rows:
        raise PersonaSetError(f"{source}: no rows")
    out = []
    for i, r in enumerate(rows):
        where = f"{source} row {i}" + (f" (user {r.get('user_id')!r})" if isinstance(r, Mapping) and
                                       r.get("user_id") is not None else "")
        if not isinstance(r, Mapping):
            raise PersonaSetError(f"{where}: not an object")
        for f in ("context", "query", "user_id"):
            if not r.get(f) or not isinstance(r[f], str):
                raise PersonaSetError(f"{where}: field {f!r} is missing or not a non-empty string")
        out.append({**r, "preferences": validate_preferences(r.get("preferences"), where)})
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise PersonaSetError(f"{path} line {n}: not JSON ({e})") from None
    return validate_rows(rows, str(path))


def write_jsonl(rows: Sequence[Mapping], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def persona_checker(responses: Sequence[str], examples: Sequence) -> dict[str, float]:
    """``evaluate_model``'s checker: preferences from ``meta['preferences']`` or read back from the context.

    A row with neither is an error naming it: a silent "no figure" would read as a result.
    """
    prefs = []
    for ex in examples:
        p = ex.meta.get("preferences") if ex.meta else None
        p = p if p is not None else preferences_from_context(ex.context or "")
        prefs.append(validate_preferences(p, f"row {ex.index} (context {(ex.context or '')[:60]!r})"))
    return preference_satisfaction(responses, prefs, check_response, DIMENSIONS)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write a persona set (train.jsonl, heldout.jsonl) with checkable "
                                "preferences.")
    p.add_argument("out_dir")
    p.add_argument("--train-users", type=int, default=16)
    p.add_argument("--heldout-users", type=int, default=8)
    p.add_argument("--queries", type=int, default=2, help="queries per user (each unique to its user)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rows = make_personas(a.train_users + a.heldout_users, a.queries, a.seed)
    train, held = split_by_user(rows, a.heldout_users, a.seed)
    out = Path(a.out_dir)
    print(write_jsonl(train, out / "train.jsonl"), f"({len(train)} rows)")
    print(write_jsonl(held, out / "heldout.jsonl"), f"({len(held)} rows)")


if __name__ == "__main__":
    main()
