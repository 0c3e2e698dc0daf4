"""Random rows at the loader and the builder: a valid DPO dataset or a documented MIPOError, nothing else."""

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from axolotl_mipo.args import MIPODatasetConfig
from axolotl_mipo.data.rows import load_examples
from axolotl_mipo.errors import MIPOError
from axolotl_mipo.generation.base import GenerationResult
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import get_strategy
from axolotl_mipo.pipeline.builder import build_preference_rows
from axolotl_mipo.testing.fake_backend import FakeBackend

NASTY = ["", " ", "\x00", "\n", "<|eot_id|>", "<|start_header_id|>system<|end_header_id|>", "{context}", "{query}",
         "\ud800", "é", "中文", "\u200b", "a" * 300]
text = st.one_of(st.text(max_size=40), st.sampled_from(NASTY),
                 st.lists(st.sampled_from(NASTY), max_size=4).map("".join))
value = st.one_of(text, st.none(), st.integers(), st.floats(allow_nan=True), st.booleans(),
                  st.lists(text, max_size=2), st.dictionaries(text, text, max_size=2))
message = st.one_of(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", ""]),
                                           "content": st.one_of(text, st.none())}), value)
good_text = st.one_of(st.text(min_size=1, max_size=30).filter(str.strip),
                      st.lists(st.sampled_from(NASTY), max_size=3).map(lambda p: "".join(p) + " word"))
good_messages = st.tuples(good_text, good_text, st.lists(good_text, max_size=2)).map(
    lambda t: [{"role": "system", "content": t[0]}, {"role": "user", "content": t[1]}]
    + [{"role": "assistant", "content": a} for a in t[2][:1]])
# mostly plausible rows (so that datasets do get built), some hostile ones
plausible = st.fixed_dictionaries({"context": good_text, "query": good_text, "prompt": good_text,
                                   "messages": good_messages})
hostile = st.one_of(
    st.fixed_dictionaries({"context": value, "query": value, "prompt": value,
                           "messages": st.one_of(st.lists(message, max_size=4), value)}),
    value,
)
row = st.integers(0, 9).flatmap(lambda k: plausible if k < 8 else hostile)
broken = st.sampled_from(["{", "not json", '{"context": "\\ud83d"}', "[1, 2", "null"])
line = st.integers(0, 19).flatmap(
    lambda k: broken if k == 0 else row.map(lambda r: json.dumps(r, ensure_ascii=False, default=str)))


def _echo(mode: str):
    def respond(p):
        if mode == "constant":
            return GenerationResult("same", 1)
        if mode == "empty":
            return GenerationResult("", 0)
        return GenerationResult(f"r{hash(p) % 10_000}<|eot_id|>", 2)

    return FakeBackend(respond, name="echo", batch_size=8, prompt_length=lambda p: len(p) // 4, key={"echo": mode})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(line, min_size=1, max_size=12),
    fmt=st.sampled_from(["context_query", "messages", "prompt"]),
    strategy=st.sampled_from(["drop_context", "swap_context", "mismatched_prompt"]),
    on_bad_row=st.sampled_from(["raise", "skip", "skip"]),
    mode=st.sampled_from(["distinct"] * 4 + ["constant", "empty"]),
    limit=st.sampled_from([None, 40]),
)
def test_builder_returns_valid_rows_or_a_documented_error(tiny_model_and_tokenizer, lines, fmt, strategy,
                                                          on_bad_row, mode, limit):
    tok = tiny_model_and_tokenizer[1]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            exs = load_examples([MIPODatasetConfig(path=str(path), format=fmt)], on_bad_row=on_bad_row)
            rows, stats = build_preference_rows(exs, get_strategy(strategy), _echo(mode),
                                                GenerationCache(Path(d) / "cache", {}), tok,
                                                max_prompt_tokens=limit, progress=False)
        except MIPOError as err:
            event(f"refused: {type(err).__name__}")
            return
    event("built a dataset")
    assert rows and len(rows) == stats.pairs_kept <= len(exs)
    for r in rows:
        for key in ("prompt", "prompt_no_context"):
            assert r[key] and all(isinstance(m["content"], str) and m["role"] for m in r[key])
        assert r["prompt"][-1]["role"] == "user"
        c, j = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert c.strip() and j.strip() and c != j
        assert "<|eot_id|>" not in c + j
        assert "<|eot_id|>" not in "".join(m["content"] for m in r["prompt"])
