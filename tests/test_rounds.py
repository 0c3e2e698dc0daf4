"""MIPO rounds: config checks and refusals (no Axolotl), and two real rounds on the tiny model (e2e)."""

import json
from pathlib import Path

import pytest
import yaml

from axolotl_mipo.generation.cache import WEIGHTS_RECORD, model_fingerprint
from axolotl_mipo.rounds import STATE, RoundsError, load_round_config, round_config, run_rounds


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture()
def fake_config(tmp_path):
    """A config whose base model is a folder with only a config.json: enough for every check before Axolotl."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 8}))
    cfg = {"base_model": str(model), "adapter": "lora", "rl": "dpo",
           "mipo": {"datasets": [{"path": "x.jsonl"}]}, "output_dir": str(tmp_path / "o")}
    return _write(tmp_path / "cfg.yml", cfg), cfg, model


@pytest.mark.parametrize("change, key", [
    ({"adapter": None}, "adapter"),
    ({"lora_model_dir": "some/adapter"}, "lora_model_dir"),
    ({"mipo": None}, "mipo"),
    ({"base_model": None}, "base_model"),
])
def test_configs_rounds_cannot_run_are_refused_naming_the_key(fake_config, tmp_path, change, key):
    _, cfg, _ = fake_config
    path = _write(tmp_path / "bad.yml", {**cfg, **change})
    with pytest.raises(RoundsError, match=key):
        load_round_config(path)


def test_round_config_points_at_the_previous_model_and_the_round_folders(fake_config, tmp_path):
    _, cfg, _ = fake_config
    raw = {**cfg, "revision_of_model": "abc", "base_model_config": cfg["base_model"],
           "mipo": {**cfg["mipo"], "regenerate": True}}
    first = round_config(raw, 1, cfg["base_model"], tmp_path / "round_1", "/c")
    assert first["base_model"] == cfg["base_model"] and first["revision_of_model"] == "abc"
    second = round_config(raw, 2, "/out/round_1/merged", tmp_path / "round_2", "/c")
    assert second["base_model"] == second["base_model_config"] == "/out/round_1/merged"
    assert "revision_of_model" not in second
    assert second["output_dir"] == str(tmp_path / "round_2" / "adapter")
    assert second["dataset_prepared_path"] == str(tmp_path / "round_2" / "prepared")
    assert second["mipo"]["cache_dir"] == "/c" and second["mipo"]["datasets"] == cfg["mipo"]["datasets"]
    assert first["mipo"]["regenerate"] is False is second["mipo"]["regenerate"]  # train must not regenerate
    assert "cache_dir" not in raw["mipo"] and raw["mipo"]["regenerate"] is True  # the user's config is untouched


def _failing_start(config, out):
    """Start a run whose first stage fails at once (python = /bin/false): the state is written, nothing trained."""
    with pytest.raises(RoundsError, match="stage generate failed"):
        run_rounds(config, out, 1, python="/bin/false", axolotl="/bin/false", log=lambda m: None)
    assert (out / STATE).exists()


def test_a_changed_config_under_an_existing_output_folder_is_refused(fake_config, tmp_path):
    path, cfg, _ = fake_config
    out = tmp_path / "rounds"
    _failing_start(path, out)
    _write(path, {**cfg, "learning_rate": 1e-3})
    with pytest.raises(RoundsError, match="differs from the config .* new output folder"):
        run_rounds(path, out, 1, python="/bin/false", axolotl="/bin/false", log=lambda m: None)


def test_a_changed_base_model_under_an_existing_output_folder_is_refused(fake_config, tmp_path):
    path, _, model = fake_config
    out = tmp_path / "rounds"
    _failing_start(path, out)
    (model / "config.json").write_text(json.dumps({"hidden_size": 16}))
    with pytest.raises(RoundsError, match="base_model .* changed"):
        run_rounds(path, out, 1, python="/bin/false", axolotl="/bin/false", log=lambda m: None)


def test_rounds_must_be_positive(fake_config, tmp_path):
    with pytest.raises(RoundsError, match="rounds must be >= 1"):
        run_rounds(fake_config[0], tmp_path / "r", 0)


def _cache_folders(cache: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "manifest.json").read_text())["key_parts"] for d in cache.iterdir()
            if (d / "manifest.json").exists()}


def _entries(folder: Path) -> int:
    return sum(1 for s in folder.glob("shard-*.jsonl") for line in s.read_text().splitlines() if line)


@pytest.mark.e2e
def test_two_rounds_resume_and_a_changed_round_model(tiny_mipo_config, tmp_path):
    config = tiny_mipo_config()
    out = tmp_path / "rounds"
    logged = []

    first = run_rounds(config, out, 1, log=logged.append)
    r1 = Path(first[0].merged)
    assert [r.round for r in first] == [1] and not first[0].resumed
    assert (r1 / "config.json").exists() and (r1 / WEIGHTS_RECORD).exists()
    assert any(Path(first[0].adapter).glob("adapter_model.*"))
    assert sum(1 for _ in open(first[0].pairs)) > 0
    assert set(first[0].timings) == {"generate", "train", "merge", "record"}
    assert all(t.wall_s > 0 for t in first[0].timings.values())
    assert first[0].disk_bytes["merged"] > 0 and first[0].disk_bytes["adapter"] > 0
    adapter_mtime = max(f.stat().st_mtime_ns for f in Path(first[0].adapter).iterdir())

    # a kill during round 2 leaves a half-written round folder behind: the rerun must not trust it
    (out / "round_2" / "merge.partial" / "merged").mkdir(parents=True)
    (out / "round_2" / "merge.partial" / "merged" / "model.safetensors").write_bytes(b"truncated")
    both = run_rounds(config, out, 2, log=logged.append)
    assert [r.round for r in both] == [1, 2] and both[0].resumed and not both[1].resumed
    assert max(f.stat().st_mtime_ns for f in Path(first[0].adapter).iterdir()) == adapter_mtime  # not redone
    assert any("round 1 already finished" in m for m in logged) and any("interrupted" in m for m in logged)
    r2cfg = yaml.safe_load(Path(both[1].config).read_text())
    assert r2cfg["base_model"] == str(r1) == both[1].model_in  # round 2 generates with (and is referenced on) r1
    assert not (out / "round_2" / "merge.partial").exists()
    state = json.loads((out / STATE).read_text())
    assert [r["round"] for r in state["rounds"]] == [1, 2]

    # one shared cache, one folder per model: round 2 generated everything again, reusing nothing of round 1
    folders = _cache_folders(out / "cache")
    assert len(folders) == 2
    by_model = {parts["model"]["path"]: name for name, parts in folders.items()}
    assert set(by_model) == {str(Path(yaml.safe_load(config.read_text())["base_model"]).resolve()), str(r1)}
    assert folders[by_model[str(r1)]]["model"]["sha256"]  # the full content hash of the merged model is keyed
    assert _entries(out / "cache" / by_model[str(r1)]) == _entries(out / "cache" / by_model[next(
        p for p in by_model if p != str(r1))]) > 0

    # nothing left to do: a third call redoes nothing
    again = run_rounds(config, out, 2, log=logged.append)
    assert all(r.resumed for r in again)

    # round 1's model changes after round 2 was generated from it: its key changes, and the run refuses
    before = model_fingerprint(str(r1))
    from safetensors.torch import load_file, save_file

    weights = r1 / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[len(tensors) // 2]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})
    assert model_fingerprint(str(r1)) != before
    with pytest.raises(RoundsError, match="round_1/merged changed after round 1 recorded it"):
        run_rounds(config, out, 2, log=logged.append)


def test_rounds_cli_refuses_with_exit_2_and_the_reason(fake_config, tmp_path, capsys):
    from axolotl_mipo.cli import main

    _, cfg, _ = fake_config
    bad = _write(tmp_path / "bad.yml", {**cfg, "adapter": None})
    assert main(["rounds", str(bad), "--rounds", "1", "--out", str(tmp_path / "r")]) == 2
    assert "set adapter: lora" in capsys.readouterr().err
