"""The openai backend against a local fake server: retries, giving up with the cache intact."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from axolotl_mipo.errors import MIPOGenerationError
from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.generation.openai import OpenAIBackend


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
