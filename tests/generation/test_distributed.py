"""Generation at scale: kill-and-resume, two ranks vs one, and the openai backend against a local fake server."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env():
    env = dict(os.environ)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return env


def _config(tmp_path, tiny_model_dir, name, rows=48, max_new_tokens=24, batch_size=4):
    data = tmp_path / "rows.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"context": f"user {i % 7} likes topic {i % 5}",
                                            "query": f"question number {i}"}) + "\n" for i in range(rows)))
    cfg = yaml.safe_load((REPO / "example_configs" / "mipo-tiny-cpu.yml").read_text())
    cfg["base_model"] = str(tiny_model_dir)
    cfg["output_dir"] = str(tmp_path / name / "out")
    cfg["dataset_prepared_path"] = str(tmp_path / name / "prepared")
    cfg["mipo"]["datasets"] = [{"path": str(data)}]
    cfg["mipo"]["generation"].update(max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=0.7)
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path, tmp_path / name / "pairs.jsonl", tmp_path / name / "prepared" / "mipo_cache"


def _generate(path, out, launcher=(), timeout=300):
    cmd = [*launcher, str(BIN / "axolotl-mipo"), "generate", str(path), "--out", str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc.stdout + proc.stderr


def _read(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("ref")
    path, out, _ = _config(tmp, tiny_model_dir, "ref")
    _generate(path, out)
    return tmp, _read(out)


def test_killed_generation_resumes_to_the_uninterrupted_rows(reference_run, tiny_model_dir):
    tmp, reference = reference_run
    path, out, cache = _config(tmp, tiny_model_dir, "killed")
    proc = subprocess.Popen([str(BIN / "axolotl-mipo"), "generate", str(path), "--out", str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list(cache.glob("*/shard-*.jsonl"))) >= 3:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "generation finished before it could be killed; make it longer"
    assert not out.exists()
    shards_before = len(list(cache.glob("*/shard-*.jsonl")))
    log = _generate(path, out)
    assert f"reusing {shards_before * 4} cached generations" in log
    assert _read(out) == reference  # row by row


def test_two_ranks_generate_the_same_rows_as_one(reference_run, tiny_model_dir):
    tmp, reference = reference_run
    path, out, cache = _config(tmp, tiny_model_dir, "ranks")
    import socket

    with socket.socket() as s:  # a free port, so parallel runs cannot collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = _generate(path, out, launcher=[str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr",
                                         "127.0.0.1", "--master_port", str(port)])
    assert "[rank 0/2]" in log and "[rank 1/2]" in log
    assert _read(out) == reference
    # each rank generated its own batches: no prompt is in two shards
    keys = [json.loads(line)["k"] for s in cache.glob("*/shard-*.jsonl")
            for line in s.read_text(encoding="utf-8").split("\n") if line]
    assert len(keys) == len(set(keys))


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def test_generate_cli_on_two_model_copies(reference_run, tiny_model_dir):
    """``generation.devices`` through ``axolotl-mipo generate`` (from_config loads a copy per device)."""
    tmp, reference = reference_run
    path, out, _ = _config(tmp, tiny_model_dir, "copies")
    cfg = yaml.safe_load(path.read_text())
    del cfg["mipo"]["generation"]["device"]
    cfg["mipo"]["generation"]["devices"] = ["cpu", "cpu"]
    path.write_text(yaml.safe_dump(cfg))
    log = _generate(path, out)
    assert "generating on 2 model copies at once" in log
    assert _read(out) == reference


def _mixed_prompts(n=20):
    return [f"<|begin_of_text|>user {i} asks" + " and more" * (i % 6) for i in range(n)]


def test_a_rank_without_batches_loads_no_model(tiny_model_dir, tmp_path):
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = DictDefault({"base_model": str(tiny_model_dir)})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], generation={"device": "cpu", "max_new_tokens": 4})
    prompts = _mixed_prompts(2)  # one batch: rank 0's
    rank0, rank1 = backend_from_config(cfg, mipo, tok), backend_from_config(cfg, mipo, tok)

    def barrier():  # stands in for rank 0 running at the same time
        generate_with_cache(rank0, prompts, GenerationCache(tmp_path, rank0.cache_key_parts()), progress=False,
                            rank=0, world_size=2, barrier=lambda: None)

    got, stats = generate_with_cache(rank1, prompts, GenerationCache(tmp_path, rank1.cache_key_parts()),
                                     progress=False, rank=1, world_size=2, barrier=barrier)
    assert stats.generated == 0 and len(got) == len(prompts)
    assert rank0._model.value is not None and rank1._model.value is None
