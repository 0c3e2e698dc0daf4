"""The `axolotl-mipo eval` command on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from experiments.tasks import synthetic as S


def _rows(n_users=6, queries=1, seed=0):
    return S.make_task(n_users=n_users, queries_per_user=queries, seed=seed)


def test_eval_cli_writes_the_report(tmp_path, tiny_model_dir, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from axolotl_mipo.cli import main

    rows = _rows(8, 1, seed=2)  # one row per user: 6 held-out rows, 6 distinct contexts
    S.write_jsonl(rows[:2], tmp_path / "train.jsonl")
    S.write_jsonl(rows[2:], tmp_path / "heldout.jsonl")
    # a LoRA adapter with non-zero B, so "after" differs from "before"
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = {
        "base_model": str(tiny_model_dir),
        "plugins": ["axolotl_mipo.MIPOPlugin"],
        "rl": "dpo",
        "mipo": {"datasets": [{"path": str(tmp_path / "train.jsonl"), "reference_field": "reference"}],
                 "generation": {"max_new_tokens": 6, "batch_size": 4, "device": "cpu"}},
        "output_dir": str(tmp_path / "out"),
    }
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "report"
    rc = main(["eval", str(tmp_path / "cfg.yml"), "--adapter", str(tmp_path / "adapter"),
               "--data", str(tmp_path / "heldout.jsonl"), "--rows", "6", "--k", "2", "4", "--out", str(out),
               "--checker", "experiments.tasks.synthetic:synthetic_checker", "--no-progress",
               "--base-label", "before", "--adapter-label", "after"])
    assert rc == 0
    data = json.loads((out / "report.json").read_text())
    assert [r["label"] for r in data["runs"]] == ["before", "after"]
    assert data["settings"]["rows"] == 6 and data["settings"]["max_new_tokens"] == 6
    before, after = data["summary"]["before"], data["summary"]["after"]
    for name in ("mi_mean", "accuracy@K2", "accuracy@K4", "rouge_l", "meteor", "self_bleu", "ref_mi_mean",
                 "pref_all"):
        assert before[name]["n"] == 1 and after[name]["n"] == 1, name
    assert before["mi_mean"]["mean"] != after["mi_mean"]["mean"]
    assert sorted(data["plots"]) == ["accuracy_per_k.png", "mi_hist.png"]
    for png in ("mi_hist.png", "accuracy_per_k.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    md = (out / "summary.md").read_text()
    assert "| figure | before | after |" in md and "accuracy@K4" in md
    assert "accuracy@K4" in capsys.readouterr().out


def test_eval_cli_slices_the_training_rows(tmp_path, tiny_model_dir, capsys):
    from axolotl_mipo.cli import main

    S.write_jsonl(_rows(5, 2, seed=1), tmp_path / "rows.jsonl")
    cfg = {"base_model": str(tiny_model_dir), "mipo": {"datasets": [{"path": str(tmp_path / "rows.jsonl")}]},
           "output_dir": str(tmp_path / "out")}
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(cfg))
    rc = main(["eval", str(tmp_path / "cfg.yml"), "--offset", "6", "--rows", "4", "--k", "2",
               "--max-new-tokens", "3", "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "out" / "mipo_eval" / "report.json").read_text())
    assert data["settings"]["rows"] == 4 and [r["label"] for r in data["runs"]] == ["base"]
    # no reference_field in the config: no reference figures, but MI and identification are there
    figs = data["runs"][0]["figures"]
    assert "rouge_l" not in figs and "mi_mean" in figs
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "cfg.yml"), "--offset", "100", "--no-progress"])


FIX = Path(__file__).resolve().parent / "fixtures" / "presets"


def test_eval_cli_reports_preference_accuracy_for_base_and_adapter(tmp_path, tiny_model_dir, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from axolotl_mipo.cli import main

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = {"base_model": str(tiny_model_dir), "plugins": ["axolotl_mipo.MIPOPlugin"], "rl": "dpo",
           "mipo": {"datasets": [{"path": str(FIX / "community_alignment.csv"), "format": "community_alignment"}],
                    "generation": {"max_new_tokens": 4, "batch_size": 4, "device": "cpu"}},
           "output_dir": str(tmp_path / "out")}
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(cfg))
    for extra, name in (([], "both"), (["--no-base"], "adapter-only")):
        out = tmp_path / name
        rc = main(["eval", str(tmp_path / "cfg.yml"), "--adapter", str(tmp_path / "adapter"), "--preference-only",
                   "--out", str(out), "--no-progress", *extra])
        assert rc == 0
        data = json.loads((out / "report.json").read_text())
        runs = {r["label"]: r for r in data["runs"]}
        assert set(runs) == ({"adapter"} if extra else {"base", "adapter"})
        ad = runs["adapter"]["figures"]
        assert ad["pref_pairs"] == 3  # the 4th conversation has no preferred response
        assert 0 <= ad["pref_accuracy_implicit_with_context"] <= 1
        assert ad["pref_accuracy_with_context_ci_low"] <= ad["pref_accuracy_with_context"] \
            <= ad["pref_accuracy_with_context_ci_high"]
        if not extra:
            assert "pref_accuracy_implicit_with_context" not in runs["base"]["figures"]
        md = (out / "summary.md").read_text()
        assert "pref_accuracy_with_context" in md and "Wilson" in md
    both = json.loads((tmp_path / "both" / "report.json").read_text())["runs"][1]["figures"]
    alone = json.loads((tmp_path / "adapter-only" / "report.json").read_text())["runs"][0]["figures"]
    # the base's scores come from the base run or from a separate base pass: the same figures
    assert both["pref_margin_implicit_with_context"] == pytest.approx(alone["pref_margin_implicit_with_context"],
                                                                     abs=1e-4)


@pytest.mark.parametrize("spec, message", [
    ("experiments.tasks.synthetic", "not a valid module:object path; write it as 'package.module:function_name'"),
    ("no_such_module_xyz:check", "cannot import module 'no_such_module_xyz'"),
    ("experiments.tasks.synthetic:no_such_checker", "has no attribute 'no_such_checker'; check the function name"),
    ("experiments.tasks.synthetic:QUERIES", "not a function"),
])
def test_eval_cli_names_a_bad_checker_before_loading_anything(tmp_path, spec, message):
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump({"base_model": str(tmp_path / "missing-model"),
                                                      "mipo": {"datasets": [{"path": str(tmp_path / "rows.jsonl")}]}}))
    S.write_jsonl(S.make_task(2, 2, seed=0), tmp_path / "rows.jsonl")
    from axolotl_mipo.cli import main

    with pytest.raises(SystemExit, match="--checker") as e:
        main(["eval", str(tmp_path / "cfg.yml"), "--checker", spec])
    assert message in str(e.value)
