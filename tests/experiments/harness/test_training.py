"""experiments/harness/training.py: what a training log says, and an arm that is already trained."""

import pytest
import yaml

from experiments.harness import mipo_config, read_train_log, train_arm, train_metrics

LOG = """mipo: 16 rows -> 16 pairs planned, 14 kept (1 dropped for an empty response, 1 for identical)
{'loss': '0.6931', 'rewards/accuracies': '0.5', 'rewards/margins': '0.0', 'epoch': '0.5'}
{'loss': '0.41', 'rewards/accuracies': '1.0', 'rewards/margins': '0.72', 'epoch': '1.0'}
{'train_runtime': '12.5', 'train_loss': '0.55'}
"""


@pytest.mark.fast
def test_train_metrics_reads_pairs_steps_and_runtime():
    m = train_metrics(LOG)
    assert (m["rows"], m["pairs_planned"], m["pairs_kept"], m["dropped_empty"], m["dropped_identical"]) == \
        (16, 16, 14, 1, 1)
    assert m["first_step"] == {"loss": 0.6931, "rewards/accuracies": 0.5, "rewards/margins": 0.0}
    assert m["last_step"]["rewards/margins"] == 0.72 and m["logged_steps"] == 2 and m["train_runtime_s"] == 12.5
    assert train_metrics("nothing logged") == {}


@pytest.mark.fast
def test_an_arm_with_an_adapter_is_not_trained_again(tmp_path):
    d = tmp_path / "arm"
    cfg = mipo_config(0, tmp_path / "base", tmp_path / "train.jsonl", d, "swap_context")
    assert cfg["output_dir"] == str(d / "mipo") and cfg["mipo"]["strategy"] == "swap_context"
    (d / "mipo").mkdir(parents=True)
    (d / "mipo" / "adapter_model.safetensors").write_bytes(b"")
    (d / "axolotl_train.log").write_text(LOG)
    trained = train_arm(d, cfg, threads=1, label="test")  # no `axolotl train`: the adapter exists
    assert trained.adapter == d / "mipo"
    assert trained.training["pairs_kept"] == 14 and {"wall_s", "cpu_s"} <= set(trained.training)
    assert yaml.safe_load((d / "mipo.yml").read_text()) == cfg
    assert read_train_log(tmp_path / "missing.log") == {}
