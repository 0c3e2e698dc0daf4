"""The generation cache: reuse, invalidation on any key change, JSON files with a checked manifest."""

import json

import pytest

from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache, prompt_key


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
    lines = [line for s in shards for line in s.read_text(encoding="utf-8").split("\n") if line]
    assert shards and all(json.loads(line)["k"] for line in lines)
    manifest = json.loads((cache.dir / "manifest.json").read_text())
    assert manifest["key"] == cache.key


def test_prompt_key_is_stable():
    assert prompt_key("abc") == prompt_key("abc") != prompt_key("abd")


def _checkpoint(folder, fill: float = 0.0):
    """A 3-tensor safetensors checkpoint of about 4.5 MiB: the middle tensor lies beyond the first and last MiB."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    n = 3 * (1 << 20) // 4 // 2  # 1.5 MiB of float32 each
    save_file({"a": torch.zeros(n), "b": torch.full((n,), fill), "c": torch.ones(n)},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_a_folder_without_a_record_keys_as_before(tmp_path):
    from axolotl_mipo.generation.cache import _file_fingerprint, model_fingerprint

    d = _checkpoint(tmp_path / "m")
    assert model_fingerprint(str(d)) == {
        "path": str(d.resolve()),
        "files": {"config.json": _file_fingerprint(d / "config.json"),
                  "model.safetensors": _file_fingerprint(d / "model.safetensors")},
    }


def test_the_recorded_content_hash_keys_a_change_the_sampled_fingerprint_misses(tmp_path):
    from axolotl_mipo.generation.cache import model_fingerprint, record_weights, weights_sha256

    d = _checkpoint(tmp_path / "m", fill=0.0)
    sampled = model_fingerprint(str(d))
    _checkpoint(d, fill=1.0)  # as merging LoRA into middle projections does: first and last MiB unchanged
    assert model_fingerprint(str(d)) == sampled  # why the record exists

    digest = record_weights(d)
    assert digest == weights_sha256(d) and model_fingerprint(str(d))["sha256"] == digest
    recorded = GenerationCache(tmp_path / "cache", {"model": model_fingerprint(str(d))})
    assert GenerationCache(tmp_path / "cache", {"model": model_fingerprint(str(d))}).dir == recorded.dir  # hits

    _checkpoint(d, fill=2.0)
    record_weights(d)
    assert GenerationCache(tmp_path / "cache", {"model": model_fingerprint(str(d))}).dir != recorded.dir


def test_a_stale_record_is_ignored(tmp_path):
    from axolotl_mipo.generation.cache import model_fingerprint, record_weights

    d = _checkpoint(tmp_path / "m")
    record_weights(d)
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "changed": True}))
    assert "sha256" not in model_fingerprint(str(d))  # the sampled fingerprints changed the key already
