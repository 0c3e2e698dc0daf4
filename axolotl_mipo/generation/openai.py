"""The ``openai`` backend: any OpenAI-compatible server (``vllm serve``, ``axolotl vllm-serve``, SGLang, TGI...).

Prompts are sent to ``/v1/completions`` as the fully rendered chat-template
text, so the server sees token for token the prompt the trainer will see; a
server that only offers ``/chat/completions`` would apply its own template.
Each prompt is one request with a seed derived from ``(seed, prompt)`` (the
same per-prompt seeding as the ``hf`` backend), at most ``concurrency`` in
flight. Connection errors, timeouts, 429 and 5xx are retried with exponential
backoff; other 4xx answers fail at once with the server's message.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from axolotl_mipo.errors import MIPOConfigError, MIPOGenerationError
from axolotl_mipo.generation.base import GenerationResult, token_lengths
from axolotl_mipo.generation.cache import model_fingerprint
from axolotl_mipo.generation.sampling import SampledBackend, SamplingSettings

LOG = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackend(SampledBackend):
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer,
        *,
        model_id: dict | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        batch_size: int = 64,
        sampling: SamplingSettings | None = None,
        **sampling_fields,
    ):
        """``sampling``, with any of its fields given by name (``max_new_tokens=8``) replacing its values."""
        import httpx

        self.sampling = SamplingSettings.build(sampling, **sampling_fields)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id or {}
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers,
                                   limits=httpx.Limits(max_connections=self.concurrency))

    @classmethod
    def from_config(cls, cfg, mipo_cfg, tokenizer) -> "OpenAIBackend":
        gen = mipo_cfg.generation
        if not gen.openai_base_url:
            raise MIPOConfigError("mipo.generation.backend openai needs mipo.generation.openai_base_url "
                                  "(e.g. http://127.0.0.1:8000/v1)")
        return cls(
            gen.openai_base_url,
            gen.openai_model or cfg.base_model,
            tokenizer,
            model_id=model_fingerprint(cfg.base_model, cfg.get("revision_of_model")),
            api_key=os.environ.get(gen.openai_api_key_env) if gen.openai_api_key_env else None,
            sampling=SamplingSettings.from_config(mipo_cfg),
            concurrency=gen.concurrency,
            timeout_s=gen.timeout_s,
            max_retries=gen.max_retries,
            backoff_s=gen.retry_backoff_s,
            batch_size=max(gen.batch_size, gen.concurrency),
        )

    def cache_key_parts(self) -> dict:
        return {
            **self.sampling_key_parts(),
            "served_model": self.model,
            "model": self.model_id,
        }

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        return token_lengths(self.tokenizer, prompts)

    def _payload(self, prompt: str) -> dict:
        sp = self.sampling
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": sp.max_new_tokens,
            "temperature": sp.effective_temperature,
            "top_p": sp.top_p,
            "seed": sp.prompt_seed(prompt) % (2**31 - 1),
            "n": 1,
        }
        if sp.top_k is not None:
            body["top_k"] = sp.top_k
        if sp.repetition_penalty is not None:
            body["repetition_penalty"] = sp.repetition_penalty
        return body

    def _one(self, prompt: str) -> GenerationResult:
        import httpx

        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                resp = self.client.post(f"{self.base_url}/completions", json=self._payload(prompt))
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    data = resp.json()
                    choice = data["choices"][0]
                    text = (choice.get("text") or "").strip()
                    usage = data.get("usage") or {}
                    n = usage.get("completion_tokens")
                    if n is None:
                        n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                    return GenerationResult(text, int(n))
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code not in _RETRY_STATUS:
                    raise MIPOGenerationError(f"the server at {self.base_url} refused a request ({last})")
            if attempt < self.max_retries:
                # full jitter keeps many threads from retrying in lockstep
                time.sleep(random.uniform(0, self.backoff_s * (2**attempt)))
        raise MIPOGenerationError(
            f"the server at {self.base_url} failed {self.max_retries + 1} times in a row (last: {last})"
        )

    def generate_batch(self, prompts: Sequence[str]) -> list[GenerationResult]:
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(self._one, prompts))

    def close(self) -> None:
        self.client.close()
