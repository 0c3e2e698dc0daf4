"""Generation at scale: kill-and-resume, two ranks vs one, and the openai backend against a local fake server."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from axolotl_mipo.errors import MIPOGenerationError
from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.generation.openai import OpenAIBackend

REPO = Path(__file__).resolve().parents[1]
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
    keys = [json.loads(line)["k"] for s in cache.glob("*/shard-*.jsonl") for line in s.read_text(encoding="utf-8").split("\n") if line]
    assert len(keys) == len(set(keys))


class FakeCompletions(BaseHTTPRequestHandler):
    """/v1/completions that fails the first try of some prompts with 503 and answers deterministically."""

    seen: dict = {}
    lock = threading.Lock()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["prompt"]
        with self.lock:
            n = self.seen[prompt] = self.seen.get(prompt, 0) + 1
        if "always-bad" in prompt:
            self._send(400, {"error": {"message": "prompt too long"}})
        elif "flaky" in prompt and n == 1:
            self._send(503, {"error": "overloaded"})
        elif "dead" in prompt:
            self._send(500, {"error": "boom"})
        else:
            text = f"echo:{prompt[-12:]}:{body['seed']}:{body['temperature']}"
            self._send(200, {"choices": [{"text": " " + text, "finish_reason": "stop"}],
                             "usage": {"completion_tokens": 3}})

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server():
    FakeCompletions.seen = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeCompletions)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def test_openai_backend_retries_then_succeeds(server, tok, tmp_path):
    b = OpenAIBackend(server, "tiny", tok, max_new_tokens=5, concurrency=4, max_retries=2, backoff_s=0.01,
                      timeout_s=5)
    prompts = [f"prompt {i} flaky" if i % 3 == 0 else f"prompt {i}" for i in range(10)]
    out, stats = generate_with_cache(b, prompts, GenerationCache(tmp_path, b.cache_key_parts()), progress=False)
    assert stats.generated == 10 and all(out[p].text.startswith("echo:") for p in prompts)
    assert FakeCompletions.seen["prompt 0 flaky"] == 2 and FakeCompletions.seen["prompt 1"] == 1
    # same seed for the same prompt on a rerun: reproducible sampling requests
    again = OpenAIBackend(server, "tiny", tok, max_new_tokens=5)
    assert again.generate_batch(["prompt 1"])[0].text == out["prompt 1"].text


def test_openai_backend_gives_up_with_the_cache_intact(server, tok, tmp_path):
    b = OpenAIBackend(server, "tiny", tok, max_new_tokens=5, concurrency=2, max_retries=1, backoff_s=0.01,
                      batch_size=2, timeout_s=5)
    cache = GenerationCache(tmp_path, b.cache_key_parts())
    # batches are planned longest first, so the failing prompt comes after the two good ones
    prompts = ["aaaaaaaaaaaaaaaaaaaa ok", "bbbbbbbbbbbbbbbbbbbb ok", "dead"]
    with pytest.raises(MIPOGenerationError, match="failed 2 times in a row.*HTTP 500"):
        generate_with_cache(b, prompts, cache, progress=False)
    assert len(GenerationCache(tmp_path, b.cache_key_parts())) == 2
    assert FakeCompletions.seen["dead"] == 2


def test_openai_backend_does_not_retry_a_client_error(server, tok, tmp_path):
    b = OpenAIBackend(server, "tiny", tok, max_retries=3, backoff_s=0.01, timeout_s=5)
    with pytest.raises(MIPOGenerationError, match="refused a request.*HTTP 400"):
        b.generate_batch(["always-bad"])
    assert FakeCompletions.seen["always-bad"] == 1


def test_openai_backend_unreachable_server(tok):
    b = OpenAIBackend("http://127.0.0.1:9/v1", "tiny", tok, max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(MIPOGenerationError, match="failed 2 times"):
        b.generate_batch(["x"])


def test_missing_vllm_names_the_extra(monkeypatch):
    import builtins

    from axolotl_mipo.errors import MIPOConfigError
    from axolotl_mipo.generation import vllm as vmod

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "vllm":
            raise ImportError("No module named 'vllm'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MIPOConfigError, match=r"pip install 'axolotl-mipo\[vllm\]'"):
        vmod._import_vllm()


@pytest.mark.parametrize("version", ["0.23.0", "0.33.0"])
def test_vllm_backend_against_a_stand_in_vllm_module(monkeypatch, tok, tmp_path, tiny_model_dir, version):
    """No GPU here, so a stand-in ``vllm`` module that accepts only vLLM's real parameter names and value ranges
    (the installed vLLM's, else those recorded from ``version``'s source) records what the backend asks: the
    LLM's options from the YAML, prompts as token ids without added special tokens, one SamplingParams per
    prompt with a seed that depends on (seed, prompt) only, and the results in prompt order through the cache."""
    from axolotl.utils.dict import DictDefault

    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config
    from axolotl_mipo.generation.base import generate_with_cache
    from axolotl_mipo.generation.cache import GenerationCache
    from axolotl_mipo.testing.fake_vllm import FakeVLLM

    fake = FakeVLLM(version).install(monkeypatch)
    cfg = DictDefault({"base_model": str(tiny_model_dir), "trust_remote_code": None, "sequence_len": 200})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], seed=7, generation={
        "backend": "vllm", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "max_new_tokens": 33,
        "temperature": 0.3, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.1})
    backend = backend_from_config(cfg, mipo, tok)
    prompts = [f"<|begin_of_text|>prompt number {i}" + " pad" * i for i in range(5)]
    cache = GenerationCache(tmp_path, backend.cache_key_parts())
    assert fake.started == [], "vLLM starts only when something is left to generate"
    got, _ = generate_with_cache(backend, prompts, cache, progress=False)
    [llm] = fake.started
    assert llm["model"] == str(tiny_model_dir) and llm["tensor_parallel_size"] == 2
    assert llm["gpu_memory_utilization"] == 0.5 and llm["trust_remote_code"] is False and llm["seed"] == 7
    assert llm["max_model_len"] == 200 + 33, "KV cache for the prompt budget plus the response, not the model's context"
    assert "quantization" not in llm
    sent = [p for batch, _ in fake.generated for p in batch]
    assert sorted(map(tuple, (p["prompt_token_ids"] for p in sent))) == sorted(
        tuple(tok(p, add_special_tokens=False).input_ids) for p in prompts)
    params = [sp.kw for _, batch in fake.generated for sp in batch]
    assert all(k["max_tokens"] == 33 and k["temperature"] == 0.3 and k["top_p"] == 0.8 and k["top_k"] == 20
               and k["repetition_penalty"] == 1.1 for k in params)
    assert all(k["stop_token_ids"] == [tok.eos_token_id] for k in params)
    for p in prompts:  # each response is the one for its own prompt, seeded by (seed, prompt) alone
        n = len(tok(p, add_special_tokens=False).input_ids)
        seed = backend.sampling_params(p).kw["seed"]
        assert got[p].text == f"ans {n} {seed}"
    assert len({backend.sampling_params(p).kw["seed"] for p in prompts}) == len(prompts)
    before = backend.sampling_params(prompts[0]).kw["seed"]
    backend.seed = 8
    assert backend.sampling_params(prompts[0]).kw["seed"] != before
    backend.close()
    assert backend.llm is None and fake.shutdowns == 1
    fake.started.clear()  # all cached: a second backend never starts vLLM
    again = backend_from_config(cfg, mipo, tok)
    assert generate_with_cache(again, prompts, cache, progress=False)[1].cached == len(prompts)
    assert fake.started == []


# ---- one process, several model copies (generation.devices) ----


def _copies(tiny_model_dir, n, **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from axolotl_mipo.generation.hf import HFBackend

    backends = [HFBackend(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(),
                          AutoTokenizer.from_pretrained(tiny_model_dir), model_id={"m": 1},
                          max_new_tokens=12, temperature=0.8, batch_size=3, **kw) for _ in range(n)]
    backends[0].replicas = backends[1:]
    return backends


def _mixed_prompts(n=20):
    return [f"<|begin_of_text|>user {i} asks" + " and more" * (i % 6) for i in range(n)]


def _record_calls(backend, log, before=None):
    real = backend.generate_batch

    def generate_batch(prompts):
        log.append((id(backend), threading.current_thread().name, len(prompts)))
        if before is not None:
            before()
        return real(prompts)

    backend.generate_batch = generate_batch


def test_model_copies_generate_the_rows_one_copy_does(tiny_model_dir, tmp_path):
    """Two copies in threads split the batches between them and give exactly the one-copy rows."""
    prompts = _mixed_prompts()
    (single,) = _copies(tiny_model_dir, 1)
    reference, _ = generate_with_cache(single, prompts, GenerationCache(tmp_path / "one", {"k": 1}), progress=False)

    main, other = _copies(tiny_model_dir, 2)
    assert main.workers() == [main, other]
    log: list = []
    _record_calls(main, log)
    _record_calls(other, log)
    got, stats = generate_with_cache(main, prompts, GenerationCache(tmp_path / "two", {"k": 1}), progress=False)
    assert {p: r.text for p, r in got.items()} == {p: r.text for p, r in reference.items()}
    assert stats.generated == len(prompts)
    assert {b for b, *_ in log} == {id(main), id(other)}, "both copies ran batches"
    assert sum(n for *_, n in log) == len(prompts), "no prompt generated twice"
    assert all(name.startswith("mipo-generate-") for _, name, _ in log)
    main.close()
    assert main.model is None and other.model is None and main.replicas == []


def test_a_failing_model_copy_keeps_every_finished_batch(tiny_model_dir, tmp_path):
    prompts = _mixed_prompts()
    main, other = _copies(tiny_model_dir, 2)
    log: list = []
    main_done = threading.Event()
    real = main.generate_batch

    def main_batch(batch):
        out = real(batch)
        main_done.set()
        return out

    main.generate_batch = main_batch

    def lose_device():
        assert main_done.wait(60)  # fail once the other copy has finished a batch, so there is one to keep
        raise RuntimeError("device lost")

    _record_calls(other, log, before=lose_device)
    cache = GenerationCache(tmp_path / "c", {"k": 1})
    with pytest.raises(MIPOGenerationError, match="device lost") as info:
        generate_with_cache(main, prompts, cache, progress=False)
    assert "a rerun resumes there" in str(info.value)
    finished = len(cache)
    assert 0 < finished < len(prompts), "the healthy copy's finished batches are kept"
    # a rerun generates only the rest, and the rows are the uninterrupted ones
    (single,) = _copies(tiny_model_dir, 1)
    log.clear()
    _record_calls(single, log)
    got, stats = generate_with_cache(single, prompts, GenerationCache(tmp_path / "c", {"k": 1}), progress=False)
    assert stats.cached == finished and sum(n for *_, n in log) == len(prompts) - finished
    (fresh,) = _copies(tiny_model_dir, 1)
    reference, _ = generate_with_cache(fresh, prompts, GenerationCache(tmp_path / "ref", {"k": 1}), progress=False)
    assert {p: r.text for p, r in got.items()} == {p: r.text for p, r in reference.items()}


def test_generation_devices_choice(monkeypatch):
    from axolotl_mipo.args import MIPOGenerationConfig
    from axolotl_mipo.generation import hf

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert hf.generation_devices(MIPOGenerationConfig(devices=["cpu", "cpu"])) == ["cpu", "cpu"]
    assert hf.generation_devices(MIPOGenerationConfig(device="cpu")) == ["cpu"]
    monkeypatch.setattr(hf.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hf.torch.cuda, "device_count", lambda: 3)
    assert hf.generation_devices(MIPOGenerationConfig()) == ["cuda:0", "cuda:1", "cuda:2"]
    assert hf.generation_devices(MIPOGenerationConfig(device="cuda:1")) == ["cuda:1"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert hf.generation_devices(MIPOGenerationConfig()) == ["cuda:1"]
    # one YAML for a one-process preprocess and a multi-GPU train: under a launch each rank takes its own GPU
    assert hf.generation_devices(MIPOGenerationConfig(devices=["cuda:0", "cuda:1"])) == ["cuda:1"]
    with pytest.raises(ValueError, match="devices is an option of the hf backend"):
        MIPOGenerationConfig(backend="openai", openai_base_url="http://x", devices=["cuda:0"])
    with pytest.raises(ValueError, match="one of mipo.generation.device and mipo.generation.devices"):
        MIPOGenerationConfig(device="cpu", devices=["cpu"])
    with pytest.raises(ValueError):
        MIPOGenerationConfig(devices=[])


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


def test_model_copies_that_would_compute_differently_are_refused(monkeypatch):
    from axolotl_mipo.args import MIPOGenerationConfig
    from axolotl_mipo.errors import MIPOConfigError
    from axolotl_mipo.generation import hf

    with pytest.raises(MIPOConfigError, match=r"devices \['cpu', 'meta'\].*device types"):
        hf._check_copies_alike(["cpu", "meta"], ["float32", "float32"])
    with pytest.raises(MIPOConfigError, match="set mipo.generation.dtype"):
        hf._check_copies_alike(["cpu", "cpu"], ["bfloat16", "float32"])
    hf._check_copies_alike(["cpu", "cpu"], ["float32", "float32"])
    assert hf._dtype_name(MIPOGenerationConfig(dtype="float16"), "cuda:0") == "float16"
    assert hf._dtype_name(MIPOGenerationConfig(), "cpu") == "float32"


def test_hf_backend_loads_its_model_only_when_something_is_left_to_generate(tiny_model_dir, tmp_path):
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = DictDefault({"base_model": str(tiny_model_dir)})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], generation={"device": "cpu", "max_new_tokens": 4})
    prompts = _mixed_prompts(6)
    first = backend_from_config(cfg, mipo, tok)
    assert first._model.value is None
    cache = GenerationCache(tmp_path, first.cache_key_parts())  # the key needs no model
    assert first._model.value is None
    generate_with_cache(first, prompts, cache, progress=False)
    assert first._model.value is not None
    first.close()
    assert first.model is None, "a closed backend does not load again"

    again = backend_from_config(cfg, mipo, tok)
    assert again.cache_key_parts() == first.cache_key_parts()
    got, stats = generate_with_cache(again, prompts, GenerationCache(tmp_path, again.cache_key_parts()),
                                     progress=False)
    assert stats.cached == len(prompts) and again._model.value is None


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
