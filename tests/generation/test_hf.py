"""The hf backend: batch-invariant sampling, the decode loop against transformers, OOM, model copies."""


import threading

import pytest

from axolotl_mipo.errors import MIPOGenerationError
from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.generation.hf import HFBackend


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
    dense = full + (-torch.log(-torch.log(counter_uniform(seeds, 7, 5000)))).float()
    assert torch.equal(add_gumbel(full, seeds, 7), dense)


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


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def _copies(tiny_model_dir, n, **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from axolotl_mipo.generation.hf import HFBackend

    backends = [HFBackend(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(),
                          AutoTokenizer.from_pretrained(tiny_model_dir), model_id={"m": 1},
                          max_new_tokens=12, temperature=0.8, batch_size=3, **kw) for _ in range(n)]
    backends[0].replicas = backends[1:]
    return backends


def _mixed_prompts(n=20):
    return [f"<|begin_of_text|>user {i} asks" + " and more" * (i % 6) for i in range(n)]


def _record_calls(backend, log, before=None):
    real = backend.generate_batch

    def generate_batch(prompts):
        log.append((id(backend), threading.current_thread().name, len(prompts)))
        if before is not None:
            before()
        return real(prompts)

    backend.generate_batch = generate_batch


def test_model_copies_generate_the_rows_one_copy_does(tiny_model_dir, tmp_path):
    """Two copies in threads split the batches between them and give exactly the one-copy rows."""
    prompts = _mixed_prompts()
    (single,) = _copies(tiny_model_dir, 1)
    reference, _ = generate_with_cache(single, prompts, GenerationCache(tmp_path / "one", {"k": 1}), progress=False)

    main, other = _copies(tiny_model_dir, 2)
    assert main.workers() == [main, other]
    log: list = []
    _record_calls(main, log)
    _record_calls(other, log)
    got, stats = generate_with_cache(main, prompts, GenerationCache(tmp_path / "two", {"k": 1}), progress=False)
    assert {p: r.text for p, r in got.items()} == {p: r.text for p, r in reference.items()}
    assert stats.generated == len(prompts)
    assert {b for b, *_ in log} == {id(main), id(other)}, "both copies ran batches"
    assert sum(n for *_, n in log) == len(prompts), "no prompt generated twice"
    assert all(name.startswith("mipo-generate-") for _, name, _ in log)
    main.close()
    assert main.model is None and other.model is None and main.replicas == []


def test_a_failing_model_copy_keeps_every_finished_batch(tiny_model_dir, tmp_path):
    prompts = _mixed_prompts()
    main, other = _copies(tiny_model_dir, 2)
    log: list = []
    main_done = threading.Event()
    real = main.generate_batch

    def main_batch(batch):
        out = real(batch)
        main_done.set()
        return out

    main.generate_batch = main_batch

    def lose_device():
        assert main_done.wait(60)  # fail once the other copy has finished a batch, so there is one to keep
        raise RuntimeError("device lost")

    _record_calls(other, log, before=lose_device)
    cache = GenerationCache(tmp_path / "c", {"k": 1})
    with pytest.raises(MIPOGenerationError, match="device lost") as info:
        generate_with_cache(main, prompts, cache, progress=False)
    assert "a rerun resumes there" in str(info.value)
    finished = len(cache)
    assert 0 < finished < len(prompts), "the healthy copy's finished batches are kept"
    # a rerun generates only the rest, and the rows are the uninterrupted ones
    (single,) = _copies(tiny_model_dir, 1)
    log.clear()
    _record_calls(single, log)
    got, stats = generate_with_cache(single, prompts, GenerationCache(tmp_path / "c", {"k": 1}), progress=False)
    assert stats.cached == finished and sum(n for *_, n in log) == len(prompts) - finished
    (fresh,) = _copies(tiny_model_dir, 1)
    reference, _ = generate_with_cache(fresh, prompts, GenerationCache(tmp_path / "ref", {"k": 1}), progress=False)
    assert {p: r.text for p, r in got.items()} == {p: r.text for p, r in reference.items()}


def test_generation_devices_choice(monkeypatch):
    from axolotl_mipo.args import MIPOGenerationConfig
    from axolotl_mipo.generation import hf

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert hf.generation_devices(MIPOGenerationConfig(devices=["cpu", "cpu"])) == ["cpu", "cpu"]
    assert hf.generation_devices(MIPOGenerationConfig(device="cpu")) == ["cpu"]
    monkeypatch.setattr(hf.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hf.torch.cuda, "device_count", lambda: 3)
    assert hf.generation_devices(MIPOGenerationConfig()) == ["cuda:0", "cuda:1", "cuda:2"]
    assert hf.generation_devices(MIPOGenerationConfig(device="cuda:1")) == ["cuda:1"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert hf.generation_devices(MIPOGenerationConfig()) == ["cuda:1"]
    # one YAML for a one-process preprocess and a multi-GPU train: under a launch each rank takes its own GPU
    assert hf.generation_devices(MIPOGenerationConfig(devices=["cuda:0", "cuda:1"])) == ["cuda:1"]
    with pytest.raises(ValueError, match="devices is an option of the hf backend"):
        MIPOGenerationConfig(backend="openai", openai_base_url="http://x", devices=["cuda:0"])
    with pytest.raises(ValueError, match="one of mipo.generation.device and mipo.generation.devices"):
        MIPOGenerationConfig(device="cpu", devices=["cpu"])
    with pytest.raises(ValueError):
        MIPOGenerationConfig(devices=[])


def test_model_copies_that_would_compute_differently_are_refused(monkeypatch):
    from axolotl_mipo.args import MIPOGenerationConfig
    from axolotl_mipo.errors import MIPOConfigError
    from axolotl_mipo.generation import hf

    with pytest.raises(MIPOConfigError, match=r"devices \['cpu', 'meta'\].*device types"):
        hf._check_copies_alike(["cpu", "meta"], ["float32", "float32"])
    with pytest.raises(MIPOConfigError, match="set mipo.generation.dtype"):
        hf._check_copies_alike(["cpu", "cpu"], ["bfloat16", "float32"])
    hf._check_copies_alike(["cpu", "cpu"], ["float32", "float32"])
    assert hf._dtype_name(MIPOGenerationConfig(dtype="float16"), "cuda:0") == "float16"
    assert hf._dtype_name(MIPOGenerationConfig(), "cpu") == "float32"


def test_hf_backend_loads_its_model_only_when_something_is_left_to_generate(tiny_model_dir, tmp_path):
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = DictDefault({"base_model": str(tiny_model_dir)})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], generation={"device": "cpu", "max_new_tokens": 4})
    prompts = _mixed_prompts(6)
    first = backend_from_config(cfg, mipo, tok)
    assert first._model.value is None
    cache = GenerationCache(tmp_path, first.cache_key_parts())  # the key needs no model
    assert first._model.value is None
    generate_with_cache(first, prompts, cache, progress=False)
    assert first._model.value is not None
    first.close()
    assert first.model is None, "a closed backend does not load again"

    again = backend_from_config(cfg, mipo, tok)
    assert again.cache_key_parts() == first.cache_key_parts()
    got, stats = generate_with_cache(again, prompts, GenerationCache(tmp_path, again.cache_key_parts()),
                                     progress=False)
    assert stats.cached == len(prompts) and again._model.value is None
