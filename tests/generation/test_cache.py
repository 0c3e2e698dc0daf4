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
