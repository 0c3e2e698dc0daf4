"""The hf backend and the cache: batch-invariant sampling, reuse, invalidation, resume, OOM."""

import json

import pytest

from axolotl_mipo.data.builder import render_prompt
from axolotl_mipo.errors import MIPOGenerationError
from axolotl_mipo.generation.base import GenerationBackend, GenerationResult, generate_with_cache, plan_batches
from axolotl_mipo.generation.cache import GenerationCache, model_fingerprint, prompt_key
from axolotl_mipo.generation.hf import HFBackend

QUERIES = ["What should I cook tonight?", "Recommend a book.", "Plan my trip, with many details please.",
           "Hi", "Explain photosynthesis.", "Write a greeting."]


@pytest.fixture()
def backend(tiny_model_and_tokenizer, tiny_model_dir):
    model, tok = tiny_model_and_tokenizer
    return HFBackend(model, tok, model_id=model_fingerprint(str(tiny_model_dir)), max_new_tokens=8,
                     temperature=1.0, top_p=0.9, batch_size=4, seed=3)


@pytest.fixture()
def prompts(tiny_model_and_tokenizer):
    _, tok = tiny_model_and_tokenizer
    return [render_prompt(tok, [{"role": "system", "content": "I like jazz."}, {"role": "user", "content": q}])
            for q in QUERIES]


def test_sampling_does_not_depend_on_batching(backend, prompts):
    together = [r.text for r in backend.generate_batch(prompts)]
    alone = [backend.generate_batch([p])[0].text for p in prompts]
    reversed_ = [r.text for r in backend.generate_batch(prompts[::-1])][::-1]
    assert together == alone == reversed_


def test_seed_changes_samples(backend, prompts):
    a = [r.text for r in backend.generate_batch(prompts)]
    backend.seed = 4
    b = [r.text for r in backend.generate_batch(prompts)]
    assert a != b


def test_greedy_matches_plain_generate(tiny_model_and_tokenizer, prompts, tiny_model_dir):
    import torch

    model, tok = tiny_model_and_tokenizer
    b = HFBackend(model, tok, model_id={}, max_new_tokens=6, temperature=0.0, batch_size=8)
    ours = [r.text for r in b.generate_batch(prompts[:2])]
    for p, got in zip(prompts[:2], ours):
        ids = tok(p, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=b.eos_ids,
                                 pad_token_id=b.pad_id)
        assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip() == got


@pytest.mark.parametrize("sampling", [
    {"temperature": 0.7, "top_p": 0.9},
    {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.3},
    {"temperature": 0.0},
])
@pytest.mark.parametrize("split_prefill", [False, True])
def test_decode_loop_matches_transformers_generate(tiny_model_and_tokenizer, prompts, sampling, split_prefill):
    """The backend's own loop (rows leave the batch at EOS; with ``split_prefill`` the prompts are prefilled
    in groups of similar length and their KV caches spliced) vs ``model.generate`` with the same warpers and
    per-row noise, token by token, on a batch of mixed lengths where some rows stop early."""
    import torch

    from axolotl_mipo.generation.hf import PerRowGumbelSampler

    model, tok = tiny_model_and_tokenizer
    prompts = prompts + [p.replace("jazz", "long walks by the sea") for p in prompts]
    b = HFBackend(model, tok, model_id={}, max_new_tokens=12, batch_size=8, seed=5, **sampling)
    if split_prefill:
        b.prefill_min_rows, b.prefill_split_ratio = 1, 1.0  # a group per distinct prompt length
        lengths = sorted((len(tok(p, add_special_tokens=False).input_ids) for p in prompts), reverse=True)
        assert len(b._prefill_groups(lengths)) >= 3
    else:
        b.prefill_min_rows = 10**6  # one group: the batch padded to its longest prompt

    def reference(eos_ids):
        tok.padding_side = "left"
        enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
        tok.padding_side = "right"
        procs = b._warpers()
        if b.sample:
            procs.append(PerRowGumbelSampler(b._seeds(prompts).tolist(), model.device))
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=12, do_sample=False, eos_token_id=eos_ids,
                                 pad_token_id=b.pad_id, logits_processor=procs)
        rows = []
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))  # finished rows: eos, then pad
            rows.append(row[:cut])
        return rows

    from collections import Counter

    free = reference(b.eos_ids)
    # make rows stop early, at different steps: the most frequent token drawn becomes an end-of-sequence token
    stop = Counter(t for row in free for t in row[1:]).most_common(1)[0][0]
    b.eos_ids = sorted({*b.eos_ids, stop})
    expected = reference(b.eos_ids)
    assert len({len(r) for r in expected}) > 1, "no row stopped early: the check would not exercise pruning"
    pruned = []
    new_cache = b._new_cache

    def counting_cache():
        cache = new_cache()
        select = cache.batch_select_indices
        cache.batch_select_indices = lambda idx: (pruned.append(len(idx)), select(idx))[1]
        return cache

    b._new_cache = counting_cache
    got = b.generate_batch(prompts)
    assert pruned, "no finished row left the batch"
    assert [r.num_tokens for r in got] == [len(r) for r in expected]
    assert [r.text for r in got] == [tok.decode(r, skip_special_tokens=True).strip() for r in expected]


def test_sparse_gumbel_equals_dense_noise():
    import torch

    from axolotl_mipo.generation.hf import add_gumbel, counter_uniform

    torch.manual_seed(0)
    seeds = torch.tensor([11, 12, 13], dtype=torch.int64)
    scores = torch.randn(3, 5000)
    scores[torch.rand(3, 5000) < 0.95] = float("-inf")  # top-p leaves few finite entries: the sparse path
    dense = scores + (-torch.log(-torch.log(counter_uniform(seeds, 7, 5000)))).float()
    got = add_gumbel(scores, seeds, 7)
    finite = torch.isfinite(scores)
    assert torch.equal(got[finite], dense[finite]) and torch.isinf(got[~finite]).all()
    full = torch.randn(3, 5000)  # nothing filtered: the dense path
    assert torch.equal(add_gumbel(full, seeds, 7), full + (-torch.log(-torch.log(counter_uniform(seeds, 7, 5000)))).float())


def test_second_run_reads_the_cache(backend, prompts, tmp_path):
    cache = GenerationCache(tmp_path, backend.cache_key_parts())
    first, s1 = generate_with_cache(backend, prompts + prompts[:2], cache, progress=False)
    assert s1.requested == len(prompts) and s1.generated == len(prompts) and s1.cached == 0
    again = GenerationCache(tmp_path, backend.cache_key_parts())
    second, s2 = generate_with_cache(backend, prompts, again, progress=False)
    assert s2.generated == 0 and s2.cached == len(prompts)
    assert {p: r.text for p, r in first.items()} == {p: r.text for p, r in second.items()}


@pytest.mark.parametrize("change", ["max_new_tokens", "temperature", "top_p", "seed", "model", "template"])
def test_any_key_change_means_another_cache(backend, tmp_path, change):
    before = GenerationCache(tmp_path, backend.cache_key_parts())
    if change == "model":
        backend.model_id = {**backend.model_id, "files": {"model.safetensors": "other"}}
    elif change == "template":
        backend.tokenizer = backend.tokenizer.__class__.from_pretrained(backend.tokenizer.name_or_path)
        backend.tokenizer.chat_template = backend.tokenizer.chat_template + " "
    else:
        setattr(backend, change, getattr(backend, change) + 1 if change != "top_p" else 0.5)
    after = GenerationCache(tmp_path, backend.cache_key_parts())
    assert after.dir != before.dir


def test_cache_files_are_json_and_manifest_checked(backend, prompts, tmp_path):
    cache = GenerationCache(tmp_path, backend.cache_key_parts())
    generate_with_cache(backend, prompts[:2], cache, progress=False)
    shards = list(cache.dir.glob("shard-*.jsonl"))
    assert shards and all(json.loads(line)["k"] for s in shards for line in s.read_text(encoding="utf-8").split("\n") if line)
    manifest = json.loads((cache.dir / "manifest.json").read_text())
    assert manifest["key"] == cache.key


class FlakyBackend(GenerationBackend):
    """Echo backend that fails on its n-th batch, or reports OOM for big batches."""

    name = "flaky"

    def __init__(self, fail_on_batch=None, oom_above=None, batch_size=2):
        self.fail_on_batch, self.oom_above, self.batch_size = fail_on_batch, oom_above, batch_size
        self.batches = []

    def cache_key_parts(self):
        return {"backend": "flaky"}

    def prompt_lengths(self, prompts):
        return [len(p) for p in prompts]

    def generate_batch(self, prompts):
        if self.oom_above is not None and len(prompts) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        self.batches.append(list(prompts))
        if self.fail_on_batch is not None and len(self.batches) == self.fail_on_batch:
            raise ConnectionError("backend died")
        return [GenerationResult(p.upper(), len(p)) for p in prompts]


def test_crash_keeps_finished_batches_and_rerun_resumes(tmp_path):
    prompts = [f"prompt {i:02d}" + "x" * i for i in range(9)]
    crashing = FlakyBackend(fail_on_batch=3)
    with pytest.raises(MIPOGenerationError, match="kept in"):
        generate_with_cache(crashing, prompts, GenerationCache(tmp_path, {"b": 1}), progress=False)
    assert len(GenerationCache(tmp_path, {"b": 1})) == 4  # two full batches survived
    resumed = FlakyBackend()
    out, stats = generate_with_cache(resumed, prompts, GenerationCache(tmp_path, {"b": 1}), progress=False)
    assert stats.cached == 4 and stats.generated == 5
    done_first = {p for b in crashing.batches[:2] for p in b}
    assert not done_first & {p for b in resumed.batches for p in b}  # nothing generated twice
    assert {p: r.text for p, r in out.items()} == {p: p.upper() for p in prompts}


def test_oom_halves_the_batch_and_continues(tiny_model_and_tokenizer, prompts):
    model, tok = tiny_model_and_tokenizer
    b = HFBackend(model, tok, model_id={}, max_new_tokens=4, temperature=0.0, batch_size=6)
    real = b._generate
    calls = []

    def fake(ps):
        calls.append(len(ps))
        if len(ps) > 2:
            raise RuntimeError("CUDA out of memory.")
        return real(ps)

    b._generate = fake
    out = b.generate_batch(prompts)
    assert len(out) == len(prompts) and b.batch_size <= 3 and max(c for c in calls if c <= 2) == 2


def test_token_budget_batches_fill_short_prompts():
    lengths = [100] * 4 + [40] * 12 + [10] * 30
    batches = plan_batches(lengths, 4, extra_tokens=20)
    budget = 4 * (100 + 20)
    assert batches[0] == [0, 1, 2, 3]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * (max(lengths[i] for i in b) + 20) <= budget and len(b) <= 16
    assert len(batches) < len(plan_batches(lengths, 4))


def test_counter_noise_is_uniform_and_row_local():
    import torch

    from axolotl_mipo.generation.hf import counter_uniform

    seeds = torch.tensor([1, 2, 3], dtype=torch.int64)
    u = counter_uniform(seeds, step=5, vocab=20000)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    assert torch.equal(counter_uniform(seeds[1:2], 5, 20000)[0], u[1])  # independent of the batch
    assert not torch.equal(u[0], u[1]) and not torch.equal(counter_uniform(seeds, 6, 20000), u)


def test_gumbel_sampler_draws_from_the_softmax():
    import torch

    from axolotl_mipo.generation.hf import PerRowGumbelSampler

    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    sampler = PerRowGumbelSampler(list(range(4000)), torch.device("cpu"))
    picks = sampler(torch.zeros(4000, 3, dtype=torch.long), logits.repeat(4000, 1)).argmax(-1)
    freq = torch.bincount(picks, minlength=4).double() / 4000
    assert torch.allclose(freq, torch.softmax(logits.double(), -1), atol=0.03)


def test_plan_batches_groups_by_length():
    lengths = [5, 1, 9, 3, 7, 2]
    batches = plan_batches(lengths, 2)
    assert batches == [[2, 4], [0, 3], [5, 1]]
    assert sorted(i for b in batches for i in b) == list(range(6))


def test_prompt_key_is_stable():
    assert prompt_key("abc") == prompt_key("abc") != prompt_key("abd")
