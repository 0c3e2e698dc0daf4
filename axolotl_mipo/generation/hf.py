"""The ``hf`` backend: batched generation with the model being trained, in its own decode loop.

Sampling is made independent of batching: instead of ``do_sample=True`` (one
RNG stream shared by the whole batch, so a response depends on its neighbours),
each prompt gets its own generator seeded from ``(seed, prompt)`` and the next
token is drawn by the Gumbel-max trick on the tempered, top-p/top-k filtered
logits. The draw is exactly a sample from the same distribution, and a prompt
gets the same response whichever batch it lands in. That is what lets an
interrupted run resume, several strategies share a generation, and ranks split
the work, all producing the rows an uninterrupted single run would.

The decode loop is written here rather than left to ``model.generate`` for
speed: a row that reaches EOS leaves the batch (its KV cache rows are dropped,
in groups, so the copy is paid rarely), instead of being carried to the end of
the batch's longest response; the prefill computes logits for the last position
only; and the per-step bookkeeping is a few tensor ops. The warpers are
Transformers' own, so the distribution sampled is exactly ``generate``'s
(a test compares the two token by token).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.generation.base import GenerationBackend, GenerationResult, LoadedOnFirstUse, stop_token_ids
from axolotl_mipo.generation.cache import model_fingerprint, tokenizer_fingerprint

LOG = logging.getLogger("axolotl_mipo.generation")


def _prompt_seed(seed: int, prompt: str) -> int:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _as_int64(u: int) -> int:
    return u - (1 << 64) if u >= (1 << 63) else u


_GOLDEN = _as_int64(0x9E3779B97F4A7C15)
_M1 = _as_int64(0xBF58476D1CE4E5B9)
_M2 = _as_int64(0x94D049BB133111EB)


def _splitmix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finalizer on int64 tensors (multiplication wraps; shifts made logical with masks)."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _M1
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _M2
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def _uniform_from_bits(x: torch.Tensor) -> torch.Tensor:
    # top 53 bits -> a double in (0, 1), never exactly 0 or 1
    return (((x >> 11) & ((1 << 53) - 1)).to(torch.float64) + 0.5) / float(1 << 53)


def counter_uniform(seeds: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Uniform(0, 1) noise [rows, vocab] that is a pure function of (row seed, step, token id).

    A counter-based generator: no state to carry, vectorised over the batch, and a
    row's noise is the same whichever batch (and position in it) the row is in.
    """
    idx = torch.arange(vocab, device=seeds.device, dtype=torch.int64) + step * vocab
    return _uniform_from_bits(_splitmix(seeds[:, None] + idx[None, :] * _GOLDEN))


def add_gumbel(scores: torch.Tensor, seeds: torch.Tensor, step: int) -> torch.Tensor:
    """``scores`` (float32) plus the counter-based Gumbel noise of ``(seed, step, token)`` where finite.

    After top-p/top-k filtering most entries are -inf and can never win the
    argmax; the noise is computed only for the finite ones (with a 128k
    vocabulary and top-p 0.9 that is a few dozen of 128k per row). Each value is
    the one :func:`counter_uniform` gives for that token, so the result does not
    depend on how much was filtered.
    """
    scores = scores.float()
    finite = torch.isfinite(scores)
    vocab = scores.shape[-1]
    if 2 * int(finite.sum()) > finite.numel():  # mostly unfiltered: the dense form is cheaper
        gumbel = -torch.log(-torch.log(counter_uniform(seeds, step, vocab)))
        return torch.where(finite, scores + gumbel.to(torch.float32), scores)
    rows, cols = finite.nonzero(as_tuple=True)
    u = _uniform_from_bits(_splitmix(seeds[rows] + (cols + step * vocab) * _GOLDEN))
    out = scores.clone()
    out[rows, cols] += (-torch.log(-torch.log(u))).to(torch.float32)
    return out


class PerRowGumbelSampler:
    """Logits processor: adds per-row Gumbel noise so that greedy decoding samples.

    ``argmax(logits / T + G)`` with ``G = -log(-log U)`` is an exact draw from
    ``softmax(logits / T)``; with the top-p/top-k filtered logits it is an exact
    draw from the filtered distribution.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.seeds = torch.tensor(list(seeds), dtype=torch.int64, device=device)
        self.prompt_len: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        step = input_ids.shape[1] - self.prompt_len
        return add_gumbel(scores, self.seeds.to(scores.device), step)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def generation_devices(gen) -> list[str]:
    """The devices to load a generation model copy on: ``generation.devices``, else ``generation.device``,
    else this rank's GPU under a multi-process launch, else every visible GPU, else the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if gen.devices:
        if world == 1:
            return list(gen.devices)
        # the same YAML serves `axolotl preprocess` (one process) and a multi-GPU `axolotl train`
        LOG.warning(f"mipo.generation.devices is for one process; this is one of {world} (torchrun / accelerate "
                    "launch), so each rank generates on its own GPU instead")
    if gen.device:
        return [gen.device]
    if not torch.cuda.is_available():
        return ["cpu"]
    if world > 1:
        return [f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"]
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def _dtype_name(gen, device: str) -> str:
    if gen.dtype != "auto":
        return gen.dtype
    bf16 = False
    if device.startswith("cuda"):
        with torch.cuda.device(device):  # asks the device that will hold the copy, not the current one
            bf16 = torch.cuda.is_bf16_supported()
    return "bfloat16" if bf16 else "float32"


def _check_copies_alike(devices: list[str], dtypes: list[str]) -> None:
    """Copies that compute differently would make a row depend on which copy generated it."""
    kinds = {torch.device(d).type for d in devices}
    if len(kinds) > 1 or len(set(dtypes)) > 1:
        raise MIPOConfigError(
            f"mipo.generation.devices {devices}: the model copies would compute differently (device types "
            f"{sorted(kinds)}, dtypes {sorted(set(dtypes))}), so a response would depend on which copy made it. "
            "List devices of one type, and set mipo.generation.dtype if auto picks different ones"
        )
    if kinds == {"cuda"} and len(devices) > 1:
        names = {torch.cuda.get_device_name(torch.device(d)) for d in devices}
        if len(names) > 1:
            LOG.warning(f"mipo.generation.devices mixes GPU models {sorted(names)}: their kernels may round "
                        "differently, so a rare response can depend on which GPU generated it")


def _load_4bit(cfg, gen) -> bool:
    return gen.load_in_4bit if gen.load_in_4bit is not None else bool(cfg.get("load_in_4bit"))


def _model_id(cfg, gen, dtype_name: str) -> dict:
    """The model's part of the cache key: known before (and without) loading it."""
    return {**model_fingerprint(cfg.base_model, cfg.get("revision_of_model")), "4bit": _load_4bit(cfg, gen),
            "dtype": dtype_name}


def _load_model(cfg, gen, device: str, dtype_name: str):
    """The base model on ``device`` for generation."""
    from transformers import AutoModelForCausalLM

    LOG.info(f"mipo: loading {cfg.base_model} on {device} ({dtype_name}) to generate")
    kwargs = {
        "dtype": getattr(torch, dtype_name),
        "trust_remote_code": bool(cfg.get("trust_remote_code") or False),
    }
    if cfg.get("revision_of_model"):
        kwargs["revision"] = cfg.get("revision_of_model")
    if _load_4bit(cfg, gen) and device.startswith("cuda"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    return model


class HFBackend(GenerationBackend):
    name = "hf"

    def __init__(
        self,
        model,
        tokenizer,
        *,
        model_id: dict,
        max_new_tokens: int = 512,
        temperature: float = 0.1,
        top_p: float = 0.9,
        top_k: int | None = None,
        do_sample: bool = True,
        repetition_penalty: float | None = None,
        batch_size: int = 8,
        seed: int = 42,
        loader: Callable[[], Any] | None = None,
    ):
        """``model``, or ``loader``: a function that loads it at first use (``from_config`` passes one, so
        that a run whose responses are all cached never loads the model)."""
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.sample = do_sample and temperature > 0
        self.repetition_penalty = repetition_penalty
        self.batch_size = batch_size
        self.seed = seed
        self.replicas: list[HFBackend] = []  # copies on other devices (from_config with several devices)
        self._model = LoadedOnFirstUse(model, loader, self._set_stop_ids)  # after the tokenizer: the stop ids read it

    @property
    def model(self):
        return self._model.get()

    def _set_stop_ids(self, model) -> None:
        self.eos_ids = stop_token_ids(model.generation_config.eos_token_id, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]

    @classmethod
    def from_config(cls, cfg, mipo_cfg, tokenizer) -> "HFBackend":
        """``cfg.base_model`` for generation, as Axolotl would load it for training (without adapters).

        One copy per device of :func:`generation_devices`; the first is this backend, the others its
        ``replicas``, which ``generate_with_cache`` runs batches on at the same time. Each is loaded at
        its first use: when every response is cached (``axolotl train`` after ``axolotl preprocess``),
        none is.
        """
        gen = mipo_cfg.generation
        devices = generation_devices(gen)
        dtypes = [_dtype_name(gen, d) for d in devices]
        _check_copies_alike(devices, dtypes)  # before loading anything
        backends = []
        for device, dtype_name in zip(devices, dtypes):
            backends.append(cls(
                None,
                # a fast tokenizer resets its padding/truncation state in place when a call asks for other
                # settings; copies running at once each get their own, so that never happens concurrently
                tokenizer if not backends else copy.deepcopy(tokenizer),
                model_id=_model_id(cfg, gen, dtype_name),
                max_new_tokens=gen.max_new_tokens,
                temperature=gen.temperature,
                top_p=gen.top_p,
                top_k=gen.top_k,
                do_sample=gen.do_sample,
                repetition_penalty=gen.repetition_penalty,
                batch_size=gen.batch_size,
                seed=mipo_cfg.seed,
                loader=functools.partial(_load_model, cfg, gen, device, dtype_name),
            ))
        backends[0].replicas = backends[1:]
        return backends[0]

    def workers(self) -> list["HFBackend"]:
        copies = [self, *self.replicas]
        for c in copies:  # loaded here, not in the worker threads: loading swaps torch's init functions
            c.model  # noqa: B018 - process-wide while it runs, so two loads must not overlap
        return copies

    def cache_key_parts(self) -> dict:
        return {
            "backend": self.name,
            "sampler": "counter-gumbel-v2",
            # v2: own decode loop (rows leave the batch at EOS); the same distribution, but floating-point
            # sums over a different batch can flip a near-tie, so responses of v1 are not mixed in
            "decoder": "hf-loop-v2",
            "model": self.model_id,
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature if self.sample else 0.0,
            "top_p": self.top_p if self.sample else 1.0,
            "top_k": self.top_k if self.sample else None,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed if self.sample else None,
        }

    def budget_extra_tokens(self) -> int | None:
        return self.max_new_tokens

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        enc = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in enc]

    def _warpers(self):
        """Transformers' logits processors for the configured sampling, in ``generate``'s order, without
        the draw itself (the Gumbel noise, added by the loop or :class:`PerRowGumbelSampler`)."""
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.repetition_penalty is not None and self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.sample:
            procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k is not None:
                procs.append(TopKLogitsWarper(self.top_k))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
        return procs

    def _seeds(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([_prompt_seed(self.seed, p) for p in prompts], dtype=torch.int64, device=self.model.device)

    def _new_cache(self):
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # older signature
            return DynamicCache()

    # a prefill group closes when the next row is shorter than this fraction of its longest row ...
    prefill_split_ratio = 0.8
    # ... and it already has this many rows (fewer rows make matrix products less efficient than padding costs)
    prefill_min_rows = 4

    def _prefill_groups(self, lengths: Sequence[int]) -> list[tuple[int, int]]:
        """Contiguous ``(start, end)`` runs of the (longest-first) rows, each padded only to its own longest."""
        groups, start = [], 0
        for i in range(1, len(lengths) + 1):
            if i == len(lengths) or (lengths[i] < self.prefill_split_ratio * lengths[start]
                                     and i - start >= self.prefill_min_rows):
                groups.append((start, i))
                start = i
        return groups

    def _prefill(self, ids: torch.Tensor, att: torch.Tensor, lengths: list[int]):
        """Run the prompts through the model: ``(KV cache, next-token logits [n, vocab])``.

        Left padding makes every row of a batch as long as its longest prompt, and the padded positions
        cost a full forward each. With prompt lengths spread 1x-8x that is about a third of the prefill.
        So rows (sorted longest first) are prefilled in groups padded only to each group's own longest,
        and the groups' KV caches are then left-padded with zeros (masked out by the attention mask,
        exactly as padding tokens would be) into the one cache the batch decodes with.
        """
        from transformers.cache_utils import DynamicLayer

        extra = {"logits_to_keep": 1} if self._keeps_last_logits() else {}
        cache = self._new_cache()
        groups = self._prefill_groups(lengths)
        layers = getattr(cache, "layers", [])
        if len(groups) == 1 or not layers or not all(type(layer) is DynamicLayer for layer in layers):
            # one group, or sliding-window / other special layers that are not spliced: the batch as one
            groups = [(0, len(lengths))]
        parts = []
        for start, end in groups:
            width = lengths[start] if len(groups) > 1 else ids.shape[1]
            sub_ids, sub_att = ids[start:end, ids.shape[1] - width:], att[start:end, att.shape[1] - width:]
            sub_cache = cache if start == 0 else self._new_cache()
            pos = (sub_att.long().cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=sub_ids, attention_mask=sub_att, position_ids=pos, past_key_values=sub_cache,
                             use_cache=True, **extra)
            parts.append((sub_cache, width, out.logits[:, -1, :]))
        if len(parts) == 1:
            return cache, parts[0][2]
        full = parts[0][1]
        for i, layer in enumerate(cache.layers):
            for name in ("keys", "values"):
                setattr(layer, name, torch.cat(
                    [torch.nn.functional.pad(getattr(c.layers[i], name), (0, 0, full - w, 0)) for c, w, _ in parts]
                ))
        return cache, torch.cat([logits for _, _, logits in parts])

    def _keeps_last_logits(self) -> bool:
        # most causal LMs of Transformers 5 take logits_to_keep; a custom one may not
        import inspect

        return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    @torch.inference_mode()
    def _generate(self, prompts: Sequence[str]) -> list[GenerationResult]:
        tok = self.tokenizer
        device = self.model.device
        # padded here rather than by the tokenizer: setting its padding_side would race with the other
        # model copies' threads, which share it
        enc = tok(list(prompts), add_special_tokens=False)["input_ids"]
        # longest first, so that rows of similar length are neighbours (undone at the end)
        order = sorted(range(len(prompts)), key=lambda i: (-len(enc[i]), i))
        prompts = [prompts[i] for i in order]
        n, width = len(order), len(enc[order[0]])
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        att = torch.zeros((n, width), dtype=torch.long)
        for row, i in enumerate(order):  # left padding: generation continues from the right edge
            ids[row, width - len(enc[i]):] = torch.tensor(enc[i], dtype=torch.long)
            att[row, width - len(enc[i]):] = 1
        ids, att = ids.to(device), att.to(device)
        lengths = [len(enc[i]) for i in order]
        warpers = self._warpers()
        seeds = self._seeds(prompts) if self.sample else None
        eos = torch.tensor(self.eos_ids, dtype=torch.long, device=device)
        cache, logits = self._prefill(ids, att, lengths)
        seq = ids  # prompt + tokens so far, what the warpers see (only the repetition penalty reads it)
        track_seq = self.repetition_penalty is not None and self.repetition_penalty != 1.0
        live = torch.arange(n, device=device)  # original row of each row still in the batch
        tokens: list[list[int]] = [[] for _ in range(n)]
        finished = [False] * n
        stale = 0  # rows in the batch that already finished
        for step in range(self.max_new_tokens):
            scores = warpers(seq, logits.float()) if warpers else logits.float()
            if seeds is not None:
                scores = add_gumbel(scores, seeds[live], step)
            nxt = scores.argmax(-1)
            ended = torch.isin(nxt, eos) if eos.numel() else torch.zeros_like(nxt, dtype=torch.bool)
            for r, t, e in zip(live.tolist(), nxt.tolist(), ended.tolist()):
                if finished[r]:
                    continue
                if e:
                    finished[r] = True
                    stale += 1
                else:
                    tokens[r].append(t)
            if step == self.max_new_tokens - 1 or stale == live.numel():
                break
            if stale and 4 * stale >= live.numel():
                # drop finished rows from the batch; waiting for a quarter of it to finish keeps the KV copies few
                keep = torch.tensor([not finished[r] for r in live.tolist()], device=device).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                live, att, seq, nxt = live[keep], att[keep], seq[keep], nxt[keep]
                stale = 0
            if track_seq:
                seq = torch.cat([seq, nxt[:, None]], dim=1)
            att = torch.cat([att, att.new_ones(att.shape[0], 1)], dim=1)
            pos = att.long().sum(-1, keepdim=True) - 1
            logits = self.model(input_ids=nxt[:, None], attention_mask=att, position_ids=pos,
                                past_key_values=cache, use_cache=True).logits[:, -1, :]
        results = [GenerationResult(tok.decode(t, skip_special_tokens=True).strip(), len(t)) for t in tokens]
        out: list[GenerationResult] = [None] * n  # type: ignore[list-item]
        for pos_in_batch, original in enumerate(order):
            out[original] = results[pos_in_batch]
        return out

    def generate_batch(self, prompts: Sequence[str]) -> list[GenerationResult]:
        device = self.model.device
        # the current CUDA device is per thread and is cuda:0 in a new one, and copies run in threads: what
        # uses the current device rather than its tensors' (kernels, empty_cache) must see this copy's own
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            try:
                return self._generate(prompts)
            except Exception as exc:
                if not is_oom(exc) or len(prompts) == 1:
                    raise
            # out of memory: halve and keep going; remember the smaller size for the next batches
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        half = max(1, len(prompts) // 2)
        self.batch_size = half
        LOG.warning(f"out of memory on a batch of {len(prompts)}; continuing with batches of {half}")
        return self.generate_batch(prompts[:half]) + self.generate_batch(prompts[half:])

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()
        self.replicas = []
        self._model.drop()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
