"""A stand-in ``vllm`` module that checks every call against vLLM's real API.

No GPU here, and vLLM runs on none other, so the ``vllm`` backend meets this
module in tests. It accepts only what the real one accepts: the parameter names
of ``LLM.__init__`` (its ``**kwargs`` go to ``EngineArgs``, so those fields),
``LLM.generate`` and ``SamplingParams``, the quantization methods, and the value
ranges ``SamplingParams`` enforces. They come from the installed vLLM's source
when there is one, else from a release recorded in
:mod:`axolotl_mipo._doubles.vllm_api`. It also records what was asked and keeps
weak references to every engine it started, so a test can see it shut down and
collected.

    fake = FakeVLLM("0.33.0")
    fake.install(monkeypatch)
"""

from __future__ import annotations

import math
import sys
import types
import weakref
from collections.abc import Callable

from axolotl_mipo._doubles.vllm_api import RECORDED, installed_api


class FakeVLLM:
    def __init__(self, version: str = "0.33.0", *, respond: Callable | None = None,
                 fail_start: BaseException | None = None, fail_generate: BaseException | None = None):
        real = installed_api()
        self.api = real if real is not None else RECORDED[version]
        self.version = self.api["version"]
        self.respond = respond or _default_response
        self.fail_start, self.fail_generate = fail_start, fail_generate
        self.started: list[dict] = []  # LLM(**kwargs) of each engine start
        self.generated: list[tuple[list, list]] = []  # (prompts, sampling params) of each generate
        self.engines: list[weakref.ref] = []
        self.shutdowns = 0
        self.module = self._module()

    def install(self, monkeypatch) -> "FakeVLLM":
        """Put the stand-in in ``sys.modules`` for the test (``monkeypatch`` undoes it)."""
        for name, mod in self._modules.items():
            monkeypatch.setitem(sys.modules, name, mod)
        return self

    def live_engines(self) -> int:
        return sum(r() is not None for r in self.engines)

    # -- the module ----------------------------------------------------------
    def _module(self):
        fake, api = self, self.api
        init, gen = api["LLM.__init__"], api["LLM.generate"]

        class SamplingParams:
            def __init__(self, **kw):
                unknown = sorted(set(kw) - set(api["SamplingParams"]))
                if unknown:
                    raise TypeError(f"SamplingParams (vLLM {api['version']}) has no field(s) {unknown}")
                _check_sampling(kw, api)
                self.kw = kw
                for k, v in kw.items():
                    setattr(self, k, v)

        class _EngineCore:
            def shutdown(self, timeout=None):
                fake.shutdowns += 1

        class LLM:
            def __init__(self, *args, **kw):
                if len(args) > 1 or (args and "model" in kw):
                    raise TypeError("LLM() takes one positional argument, model")
                kw = {"model": args[0], **kw} if args else kw
                named = set(init["positional"]) | set(init["keyword_only"])
                unknown = sorted(k for k in kw if k not in named
                                 and not (init["var_keyword"] and k in api["EngineArgs"]))
                if unknown:
                    raise TypeError(f"LLM() (vLLM {api['version']}) got unexpected keyword(s) {unknown}")
                q = kw.get("quantization")
                if q is not None and q not in api["quantization_methods"]:
                    raise ValueError(f"Unknown quantization method: {q}. Must be one of "
                                     f"{api['quantization_methods']}.")
                fake.started.append(kw)
                if fake.fail_start is not None:
                    raise fake.fail_start
                self.llm_engine = types.SimpleNamespace(engine_core=_EngineCore())
                fake.engines.append(weakref.ref(self))

            def generate(self, prompts, sampling_params=None, *args, **kw):
                if args:
                    raise TypeError("LLM.generate takes prompts and sampling_params positionally, the rest by name")
                unknown = sorted(set(kw) - set(gen["keyword_only"]) - set(gen["positional"]))
                if unknown:
                    raise TypeError(f"LLM.generate (vLLM {api['version']}) got unexpected keyword(s) {unknown}")
                params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
                if len(params) != len(prompts):
                    raise ValueError("the lengths of prompts and sampling_params must be the same")
                for p in prompts:
                    if not isinstance(p, (str, dict)) or (isinstance(p, dict) and "prompt_token_ids" not in p
                                                         and "prompt" not in p):
                        raise TypeError(f"not a vLLM prompt: {p!r}")
                fake.generated.append((prompts, params))
                if fake.fail_generate is not None:
                    raise fake.fail_generate
                return [_output(*fake.respond(p, sp)) for p, sp in zip(prompts, params)]

        vllm = types.ModuleType("vllm")
        vllm.LLM, vllm.SamplingParams, vllm.__version__ = LLM, SamplingParams, api["version"]
        quant = types.ModuleType("vllm.model_executor.layers.quantization")
        quant.QUANTIZATION_METHODS = list(api["quantization_methods"])
        self._modules = {"vllm": vllm, "vllm.model_executor": types.ModuleType("vllm.model_executor"),
                         "vllm.model_executor.layers": types.ModuleType("vllm.model_executor.layers"),
                         "vllm.model_executor.layers.quantization": quant}
        return vllm


def _check_sampling(kw: dict, api: dict) -> None:
    """The ranges vLLM's ``SamplingParams._verify_args`` enforces (the temperature cap only where it has one)."""
    t = kw.get("temperature", 1.0)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"temperature must be a finite non-negative number, got {t}")
    if api.get("temperature_max") is not None and t > api["temperature_max"]:
        raise ValueError(f"temperature must be in [0, {api['temperature_max']}], got {t}")
    if not 0.0 < kw.get("top_p", 1.0) <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {kw['top_p']}")
    top_k = kw.get("top_k", 0)
    if not isinstance(top_k, int) or top_k < -1:
        raise ValueError(f"top_k must be 0 (disable), or at least 1, got {top_k}")
    if kw.get("repetition_penalty", 1.0) <= 0:
        raise ValueError("repetition_penalty must be greater than zero")
    if kw.get("max_tokens", 16) is not None and kw.get("max_tokens", 16) < 1:
        raise ValueError("max_tokens must be at least 1")
    stop = kw.get("stop_token_ids")
    if stop is not None and not all(isinstance(i, int) and i >= 0 for i in stop):
        raise ValueError(f"stop_token_ids must be non-negative ints, got {stop}")


def _default_response(prompt, params) -> tuple[str, list[int]]:
    """``ans <prompt length> <seed>`` and the prompt's last three ids as the response's tokens."""
    ids = prompt["prompt_token_ids"]
    return f" ans {len(ids)} {params.kw.get('seed')} ", ids[-3:]


def _output(text: str, token_ids: list[int]):
    return types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text, token_ids=list(token_ids))])
