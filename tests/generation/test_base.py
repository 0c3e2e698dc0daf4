"""generate_with_cache and plan_batches: resume after a crash, token-budget batches."""

import pytest

from axolotl_mipo.errors import MIPOGenerationError
from axolotl_mipo.generation.base import GenerationResult, generate_with_cache, plan_batches
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.testing.fake_backend import FakeBackend

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)


def FlakyBackend(fail_on_batch=None):
    """Answers each prompt in upper case; fails on its n-th batch."""
    return FakeBackend(lambda p: GenerationResult(p.upper(), len(p)), name="flaky", batch_size=2, prompt_length=len,
                       fail_on_batch=fail_on_batch)


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


def test_token_budget_batches_fill_short_prompts():
    lengths = [100] * 4 + [40] * 12 + [10] * 30
    batches = plan_batches(lengths, 4, extra_tokens=20)
    budget = 4 * (100 + 20)
    assert batches[0] == [0, 1, 2, 3]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * (max(lengths[i] for i in b) + 20) <= budget and len(b) <= 16
    assert len(batches) < len(plan_batches(lengths, 4))


def test_plan_batches_groups_by_length():
    lengths = [5, 1, 9, 3, 7, 2]
    batches = plan_batches(lengths, 2)
    assert batches == [[2, 4], [0, 3], [5, 1]]
    assert sorted(i for b in batches for i in b) == list(range(6))
