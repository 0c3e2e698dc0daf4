"""The reference precompute's cache key and row compaction (the pass itself runs in tests/test_trainer.py)."""

import types

import pytest
import torch

from axolotl_mipo.args import MIPOLossSettings
from axolotl_mipo.reference import CACHE_VERSION, cache_key, compact_rows

pytestmark = pytest.mark.fast


def _settings(**mipo):
    return MIPOLossSettings.from_args(types.SimpleNamespace(**{f"mipo_{k}": v for k, v in mipo.items()}))


def test_compact_rows_keeps_each_rows_masked_values_in_order():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[False, True, True], [True, False, False]])
    assert compact_rows(values, mask) == [[2.0, 3.0], [4.0]]


def test_cache_key_changes_with_every_setting_that_changes_a_cached_value():
    base = _settings(loss="perce", perce_weights_from="reference")
    key = cache_key("data", "model", base, 48, "keep_end")
    assert key[0] == CACHE_VERSION
    others = [
        cache_key("other data", "model", base, 48, "keep_end"),
        cache_key("data", "other model", base, 48, "keep_end"),
        cache_key("data", "model", _settings(loss="perce"), 48, "keep_end"),
        cache_key("data", "model", _settings(loss="rmipo", rmipo_form="dpo", rmipo_pmi_from="reference"), 48,
                  "keep_end"),
        cache_key("data", "model", base, 64, "keep_end"),
        cache_key("data", "model", base, 48, "keep_start"),
    ]
    assert len({key, *others}) == len(others) + 1
