"""experiments/harness/stages.py: a stage runs once and is read back; the plan guard."""

import json

import pytest

from experiments.harness import check_out, stage


@pytest.mark.fast
def test_a_stage_runs_once_records_its_cost_and_is_read_back(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"figure": 0.5}

    first = stage(tmp_path / "s.json", fn)
    assert first["figure"] == 0.5 and first["wall_s"] >= 0 and first["cpu_s"] >= 0
    assert stage(tmp_path / "s.json", fn) == json.loads((tmp_path / "s.json").read_text()) == first
    assert calls == [1] and not (tmp_path / "s.tmp").exists()


@pytest.mark.fast
def test_a_failed_stage_leaves_nothing_to_resume_from(tmp_path):
    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        stage(tmp_path / "s.json", boom)
    assert not (tmp_path / "s.json").exists()


@pytest.mark.fast
def test_check_out_refuses_a_second_plan(tmp_path):
    check_out(tmp_path / "o", {"seeds": [0]})
    check_out(tmp_path / "o", {"seeds": [0]})
    with pytest.raises(SystemExit, match="different plan"):
        check_out(tmp_path / "o", {"seeds": [1]})
