"""Generation hands its memory to training: after the plugin's ``load_datasets`` (where ``axolotl train``
generates, before it loads the model to train), nothing of ours still references a generation model or
engine, for every backend, every model copy, and also when generation failed and its exception is still
held (its traceback reaches into the model's own frames)."""

import gc
import json
import threading
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from axolotl_mipo.errors import MIPOGenerationError


@pytest.fixture()
def run_load_datasets(tiny_mipo_config):
    """``MIPOPlugin.load_datasets`` on the tiny example config, loaded by Axolotl's own ``load_cfg``."""
    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    from axolotl_mipo.plugin import MIPOPlugin

    def run(**mipo):
        mipo.setdefault("datasets", [{"path": None, "format": "context_query", "max_rows": 6}])
        path = tiny_mipo_config()
        import yaml

        raw = yaml.safe_load(path.read_text())
        mipo["datasets"][0]["path"] = raw["mipo"]["datasets"][0]["path"]
        gen = {**raw["mipo"]["generation"], "max_retries": 0, **mipo.pop("generation", {})}
        raw["mipo"].update(mipo, generation=gen)
        path.write_text(yaml.safe_dump(raw))
        PluginManager.get_instance().plugins.clear()
        return MIPOPlugin().load_datasets(load_cfg(str(path)))

    return run


@pytest.fixture()
def tracked(monkeypatch):
    """Weak references to every generation model the hf backend loads and every backend the pipeline makes.
    ``fail_on_forward=n``: the n-th forward of a loaded model raises (inside the model's own frames)."""
    from axolotl_mipo import pipeline
    from axolotl_mipo.generation import hf

    refs = {"models": [], "backends": [], "fail_on_forward": None}
    forwards = [0]
    load_model, make_backend = hf._load_model, pipeline.backend_from_config

    def load(*a, **k):
        model = load_model(*a, **k)

        def hook(module, args):
            forwards[0] += 1
            if refs["fail_on_forward"] is not None and forwards[0] >= refs["fail_on_forward"]:
                raise RuntimeError("CUDA error: device-side assert triggered (simulated in the model's forward)")

        model.register_forward_pre_hook(hook)
        refs["models"].append(weakref.ref(model))
        return model

    def backend_from_config(*a, **k):
        backend = make_backend(*a, **k)
        refs["backends"].append(weakref.ref(backend))
        return backend

    monkeypatch.setattr(hf, "_load_model", load)
    monkeypatch.setattr(pipeline, "backend_from_config", backend_from_config)
    return refs


def _alive(refs):
    gc.collect()
    return [r() for r in refs if r() is not None]


def test_hf_copies_are_collected_after_load_datasets(run_load_datasets, tracked, tmp_path):
    meta = run_load_datasets(generation={"device": None, "devices": ["cpu", "cpu"]}, cache_dir=str(tmp_path / "c"))
    assert len(meta.train_dataset) > 0
    assert len(tracked["models"]) == 2, "one model per listed device"
    assert _alive(tracked["models"]) == [] and _alive(tracked["backends"]) == []


def test_hf_model_is_collected_while_the_failure_is_still_held(run_load_datasets, tracked, tmp_path):
    tracked["fail_on_forward"] = 2  # the prefill passes, the first decode step fails
    with pytest.raises(MIPOGenerationError, match="simulated") as failure:
        run_load_datasets(cache_dir=str(tmp_path / "c"))
    assert failure.value.__traceback__ is not None  # the exception, traceback and all, is still held here
    assert len(tracked["models"]) == 1
    assert _alive(tracked["models"]) == [], "the traceback's frames keep the generation model alive"
    assert _alive(tracked["backends"]) == []


@pytest.mark.parametrize("fail", [False, True])
def test_vllm_engine_is_shut_down_and_collected(run_load_datasets, tracked, tmp_path, monkeypatch, fail):
    from axolotl_mipo._doubles.fake_vllm import FakeVLLM

    fake = FakeVLLM(fail_generate=RuntimeError("engine core died") if fail else None).install(monkeypatch)
    gen = {"backend": "vllm", "device": None, "load_in_4bit": False}
    if fail:
        with pytest.raises(MIPOGenerationError, match="engine core died") as failure:
            run_load_datasets(generation=gen, cache_dir=str(tmp_path / "c"))
        assert failure.value.__traceback__ is not None
    else:
        run_load_datasets(generation=gen, cache_dir=str(tmp_path / "c"))
    assert len(fake.started) == 1 and fake.shutdowns == 1, "close() shuts the engine core down itself"
    assert _alive(fake.engines) == []
    assert _alive(tracked["backends"]) == []


class _Completions(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = json.dumps({"choices": [{"text": f" reply {len(body['prompt'])}", "finish_reason": "stop"}],
                           "usage": {"completion_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_openai_backend_is_collected(run_load_datasets, tracked, tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        run_load_datasets(generation={"backend": "openai", "device": None,
                                      "openai_base_url": f"http://127.0.0.1:{httpd.server_address[1]}/v1"},
                          cache_dir=str(tmp_path / "c"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(tracked["backends"]) == 1 and _alive(tracked["backends"]) == []


def test_handoff_check_reports_memory_still_held(monkeypatch, caplog):
    """On CUDA the pipeline compares the memory allocated after closing the backend with before it existed;
    the figure and a leak are logged (simulated here: no GPU)."""
    import torch

    from axolotl_mipo.generation import handoff

    monkeypatch.setattr(handoff, "cuda_allocated", lambda: {0: 5 * 2**30})
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: (70 * 2**30, 141 * 2**30))
    with caplog.at_level("INFO", logger="axolotl_mipo.generation"):
        held = handoff.check_handoff({0: 1 * 2**30})
    assert held == {0: 4 * 2**30}
    assert "cuda:0 5120 MiB (before 1024; 70.0 GiB free on the device)" in caplog.text
    assert "still holds GPU memory" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="axolotl_mipo.generation"):
        assert handoff.check_handoff({0: 5 * 2**30}) == {0: 0}
    assert "still holds" not in caplog.text

