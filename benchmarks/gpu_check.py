"""One device check for a short GPU slot, rehearsed on the CPU with ``--smoke``.

    python benchmarks/gpu_check.py [--budget-s 500] [--json gpu_check.json] [--workdir DIR] [--smoke]

What it measures, most informative first (a measurement that would not fit the
time left is recorded as skipped, not started):

1. ``train``: MIPO QLoRA DPO training steps on Llama-3.2-3B's shapes at sequence
   2048 and 1024, for ``loss: dpo``, ``rmipo``, ``perce`` and ``rmipo+perce``,
   with ``example_configs/mipo-llama.yml``'s settings (4-bit NF4 base, LoRA r=32
   on every linear, micro batch 2, gradient checkpointing, paged 8-bit AdamW,
   bf16): median step time and peak CUDA memory (allocated and reserved), and
   whether a 16 GB / 24 GB card holds it (reserved + 0.5 GiB CUDA context).
   Then Llama-3.1-8B's shapes at 2048 with ``dpo`` when time is left.
2. ``handoff``: in the first training run the plugin generates inside
   ``load_datasets`` (as ``axolotl train`` does); CUDA memory allocated before
   ``load_datasets`` and after it, before the training model loads. It must be
   back at its baseline.
3. ``generate``: the hf backend's tokens/s, bf16 and 4-bit, with one model copy
   and with one per visible GPU (``generation.devices``; with one GPU that is the
   same run, so it is not repeated).
4. ``vllm``: the vllm backend against raw ``vllm.LLM.generate`` on the same
   prompts and the same engine (target >= 0.9x), when vLLM is installed.

Models are built here with random weights in the real configs' shapes (random
weights change neither speed nor memory); the tokenizer is the tiny one of
``axolotl_mipo.testing.tiny`` with its vocabulary padded to Llama-3's 128256
entries. With random weights a response runs to ``max_new_tokens`` (EOS is
rare), so training sequences are filled to the length asked.

How close to ``axolotl train`` the training steps are: the YAML goes through
Axolotl's ``load_cfg``, the plugin's ``load_datasets`` through Axolotl's plugin
manager, and the model, LoRA, reference and ``MIPODPOTrainer`` come from
Axolotl's ``setup_model_and_trainer``, then ``trainer.train()`` runs. Not the
same: one process without ``accelerate launch``; ``gradient_accumulation_steps``
is 1 and ``max_steps`` 3 (the first step is warm-up), so a "step" is one micro
batch of 2 pairs; nothing is saved.

Every finished figure is written to the JSON at once (a run cut short still
reports); one table is printed at the end. ``--smoke`` runs the same code paths
on the CPU with small shapes (LoRA without 4-bit, fp32, AdamW: bitsandbytes'
4-bit and paged optimizers need CUDA; the vllm step against the stand-in module
of ``axolotl_mipo._doubles.fake_vllm`` when vLLM is not installed) and measures
the CPU step's transient memory (glibc's live malloc bytes) for
``axolotl_mipo/memory.py``'s estimate.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

LOSSES = ["dpo", "rmipo", "perce", "rmipo+perce"]
GIB = 2**30
CUDA_CONTEXT = 0.5 * GIB  # what the driver takes besides torch's allocations (not seen by torch)

# the published configs' shapes (config.json of meta-llama/Llama-3.2-3B-Instruct and Llama-3.1-8B-Instruct)
SHAPES = {
    "llama-3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True,
                         max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False,
                         max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5),
    # --smoke: big enough that a step's memory stands out of the allocator's noise, small enough for 2 busy cores
    "smoke": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=False, max_position_embeddings=1024,
                  rope_theta=500000.0, rms_norm_eps=1e-5),
}


# -- results -------------------------------------------------------------------------------------------------------
class Results:
    """Figures by measurement name, written to ``path`` after every change."""

    def __init__(self, path: str, meta: dict):
        self.path, self.data = path, {"meta": meta, "measurements": {}}
        self.write()

    def put(self, name: str, value: dict) -> None:
        self.data["measurements"][name] = value
        self.write()

    def write(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.path)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _release():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- models --------------------------------------------------------------------------------------------------------
def padded_tokenizer(vocab_size: int):
    """The tiny test tokenizer, its BPE vocabulary padded to ``vocab_size`` with entries no text encodes to."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from axolotl_mipo.testing.tiny import CHAT_TEMPLATE, build_tokenizer

    tiny = build_tokenizer(1024)
    spec = json.loads(tiny.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    taken = max(max(vocab.values()), max(t["id"] for t in spec["added_tokens"])) + 1
    for i in range(taken, vocab_size):
        vocab[f"<unused_{i}>"] = i  # no merge builds it: decodes, never produced by encoding
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token=tiny.bos_token,
                                   eos_token=tiny.eos_token, pad_token=tiny.pad_token, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    assert len(fast) == vocab_size, (len(fast), vocab_size)
    return fast


def build_model_dir(name: str, out: Path) -> Path:
    """A random-weight Llama of ``SHAPES[name]`` and the padded tokenizer, saved as a checkpoint (bf16 on a GPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (out / "config.json").exists():
        return out
    shape = SHAPES[name]
    tok = padded_tokenizer(shape["vocab_size"])
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    config = LlamaConfig(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, dtype=dtype)
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if cuda else "cpu"):  # initialising 8B parameters on the CPU takes minutes
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    _release()
    return out


def write_rows(path: Path, n: int, context_tokens: int, seed: int = 0) -> Path:
    """``n`` context_query rows whose context is about ``context_tokens`` tokens of the tiny tokenizer."""
    import random

    from axolotl_mipo.testing.tiny import _OBJECTS, _QUESTIONS

    rng = random.Random(seed)
    words = " ".join(_OBJECTS).split()
    with open(path, "w") as f:
        for i in range(n):
            ctx = "The user likes " + " ".join(rng.choice(words) for _ in range(max(1, int(context_tokens / 1.1))))
            f.write(json.dumps({"context": ctx, "query": _QUESTIONS[i % len(_QUESTIONS)]}) + "\n")
    return path


# -- 1 + 2: training through Axolotl, and the hand-off -------------------------------------------------------------
def train_config(model_dir: Path, work: Path, seq: int, loss: str, smoke: bool) -> Path:
    import yaml

    cfg = yaml.safe_load((REPO / "example_configs" / "mipo-llama.yml").read_text())
    rows = work / f"rows-{seq}.jsonl"
    if not rows.exists():
        # the prompt (context + query + template) about half the sequence; the response fills the rest
        write_rows(rows, 8, seq // 2 - 40)
    cfg.pop("save_steps", None)
    cfg.update(base_model=str(model_dir), tokenizer_type="AutoTokenizer", sequence_len=seq,
               gradient_accumulation_steps=1, max_steps=3, num_epochs=1, warmup_ratio=0.0, logging_steps=1,
               save_strategy="no", output_dir=str(work / f"out-{seq}-{loss}"),
               dataset_prepared_path=str(work / "prepared"), dataloader_num_workers=0, dataset_num_proc=1)
    cfg["mipo"].update(loss=loss, cache_dir=str(work / "mipo_cache"), val_fraction=0.0)
    cfg["mipo"]["datasets"][0]["path"] = str(rows)
    # random weights sample mostly the padded vocabulary's "<unused_N>" entries, and each decodes to text that
    # re-tokenizes to about 5 tokens: seq / 6 new tokens fill the response half of the sequence
    cfg["mipo"]["generation"].update(max_new_tokens=max(16, seq // 6), batch_size=16)
    if smoke:  # bitsandbytes' 4-bit weights and paged optimizers, bf16 and tf32 need CUDA
        cfg.update(load_in_4bit=False, adapter="lora", optimizer="adamw_torch", bf16=False, tf32=False,
                   sdp_attention=False, lora_r=8, lora_alpha=16, micro_batch_size=2)
        cfg["mipo"]["generation"].update(device="cpu")
    path = work / f"cfg-{seq}-{loss}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_training(model_dir: Path, work: Path, seq: int, loss: str, smoke: bool) -> dict:
    import torch
    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager
    from axolotl.train import setup_model_and_trainer
    from transformers import TrainerCallback

    from axolotl_mipo.generation.handoff import cuda_allocated

    PluginManager.get_instance().plugins.clear()
    cfg = load_cfg(str(train_config(model_dir, work, seq, loss, smoke)))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.init()
    before = cuda_allocated()
    t = time.perf_counter()
    meta = PluginManager.get_instance().load_datasets(cfg, preprocess=False)
    data_s = time.perf_counter() - t
    after = cuda_allocated()
    out = {"seq": seq, "loss": loss, "shape": model_dir.name.removeprefix("model-"),
           "micro_batch": cfg.micro_batch_size,
           "lora_r": cfg.lora_r, "four_bit": bool(cfg.load_in_4bit), "bf16": bool(cfg.bf16),
           "optimizer": str(cfg.optimizer), "gradient_checkpointing": bool(cfg.gradient_checkpointing),
           "rows": len(meta.train_dataset), "load_datasets_s": round(data_s, 2),
           "handoff": {"allocated_before_mib": {d: b / 2**20 for d, b in before.items()},
                       "allocated_after_mib": {d: b / 2**20 for d, b in after.items()},
                       "held_mib": {d: (after[d] - before.get(d, 0)) / 2**20 for d in after}}}
    # what earlier runs in this process left allocated (should be ~0); subtracted from the peaks below
    leftover = torch.cuda.memory_allocated() if cuda else 0
    trainer, model, *_ = setup_model_and_trainer(cfg, meta)

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _sync()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync()
            times.append(time.perf_counter() - self.t)

    trainer.add_callback(StepTimer())
    static = torch.cuda.memory_allocated() if cuda else None  # the loaded model, LoRA and reference
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    from bench_losses import MemPeak  # glibc's live malloc bytes, sampled in a thread

    with MemPeak() as cpu_peak:
        trainer.train()
    batch = next(iter(trainer.get_train_dataloader()))
    out.update(
        steps=len(times), step_s=statistics.median(times[1:] or times), step_s_all=[round(x, 3) for x in times],
        batch_shape=list(batch["input_ids"].shape),
        final_loss=next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
    )
    if cuda:
        peak_alloc = torch.cuda.max_memory_allocated() - leftover
        peak_res = torch.cuda.max_memory_reserved() - leftover
        out.update(leftover_gib=leftover / GIB, static_gib=(static - leftover) / GIB,
                   peak_allocated_gib=peak_alloc / GIB, peak_reserved_gib=peak_res / GIB,
                   fits_16gb=peak_res + CUDA_CONTEXT <= 16e9, fits_24gb=peak_res + CUDA_CONTEXT <= 24e9)
    else:
        out.update(cpu_train_peak_delta_mib=cpu_peak.delta_mb, cpu_memory_kind=MemPeak.kind)
    out["estimate_gib" if cuda else "estimate_mib"] = estimate_for(out)
    del trainer, model, meta
    _release()
    return out


# -- 3: hf generation ----------------------------------------------------------------------------------------------
def run_generation(model_dir: Path, work: Path, four_bit: bool, copies: str, smoke: bool) -> dict:
    import torch
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config, generate_with_cache
    from axolotl_mipo.generation.cache import GenerationCache

    devices = (["cpu"] if smoke else
               ["cuda:0"] if copies == "one" else [f"cuda:{i}" for i in range(torch.cuda.device_count())])
    tok = AutoTokenizer.from_pretrained(model_dir)
    n, new = (8, 16) if smoke else (64, 256)
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"question {i}: " + "plan my trip " * 40}],
                                       tokenize=False, add_generation_prompt=True) for i in range(n)]
    cfg = DictDefault({"base_model": str(model_dir), "load_in_4bit": four_bit, "sequence_len": 1024})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], generation={
        "backend": "hf", "devices": devices, "max_new_tokens": new, "batch_size": 8 if smoke else 32,
        "load_in_4bit": four_bit and not smoke, "dtype": "float32" if smoke else "bfloat16"})
    backend = backend_from_config(cfg, mipo, tok)
    try:
        cache = GenerationCache(tempfile.mkdtemp(dir=work), backend.cache_key_parts())
        _, stats = generate_with_cache(backend, prompts, cache, progress=False)
    finally:
        backend.close()
    return {"devices": devices, "four_bit": four_bit and not smoke, "prompts": n, "max_new_tokens": new,
            "tokens": stats.tokens, "seconds": round(stats.seconds, 2),
            "tokens_per_s": stats.tokens / max(stats.seconds, 1e-9)}


# -- 4: vllm backend against raw vLLM ------------------------------------------------------------------------------
def run_vllm(model_dir: Path, work: Path, smoke: bool) -> dict:
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config, generate_with_cache
    from axolotl_mipo.generation.cache import GenerationCache

    stand_in = None
    try:
        import vllm
    except ImportError:
        if not smoke:
            return {"skipped": "vllm is not installed"}
        from axolotl_mipo._doubles.fake_vllm import FakeVLLM

        stand_in = FakeVLLM()
        for name, mod in stand_in._modules.items():
            sys.modules[name] = mod
    import vllm

    tok = AutoTokenizer.from_pretrained(model_dir)
    n, new = (8, 16) if smoke else (256, 256)
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"question {i}: " + "plan my trip " * 40}],
                                       tokenize=False, add_generation_prompt=True) for i in range(n)]
    cfg = DictDefault({"base_model": str(model_dir), "sequence_len": 1024})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], generation={
        "backend": "vllm", "max_new_tokens": new, "load_in_4bit": False, "gpu_memory_utilization": 0.5})
    import torch

    cuda = torch.cuda.is_available()
    free_before = torch.cuda.mem_get_info()[0] if cuda else None  # device-wide: the engine core is its own process
    backend = backend_from_config(cfg, mipo, tok)
    try:
        llm = backend.llm  # started once; raw and backend runs share it
        ids = [{"prompt_token_ids": x} for x in tok(prompts, add_special_tokens=False)["input_ids"]]
        params = vllm.SamplingParams(max_tokens=new, temperature=backend.sampling.effective_temperature,
                                     top_p=backend.top_p, seed=0)

        def raw():
            _sync()
            t = time.perf_counter()
            outs = llm.generate(ids, params, use_tqdm=False)
            return sum(len(o.outputs[0].token_ids) for o in outs) / (time.perf_counter() - t)

        raw()  # warm-up (CUDA graphs, allocator)
        raw_tps = [raw()]
        cache = GenerationCache(tempfile.mkdtemp(dir=work), backend.cache_key_parts())
        _, stats = generate_with_cache(backend, prompts, cache, progress=False)
        ours = stats.tokens / max(stats.seconds, 1e-9)
        raw_tps.append(raw())
    finally:
        backend.close()
        llm = None
        _release()
    held = None
    if cuda:
        time.sleep(2)  # the engine core process exits asynchronously
        held = (free_before - torch.cuda.mem_get_info()[0]) / 2**20
    base = statistics.mean(raw_tps)
    return {"version": getattr(vllm, "__version__", "?"), "stand_in": stand_in is not None, "prompts": n,
            "max_new_tokens": new, "raw_tokens_per_s": base, "backend_tokens_per_s": ours, "ratio": ours / base,
            "target": 0.9, "ok": None if stand_in else ours / base >= 0.9,
            "engine_shut_down": stand_in.shutdowns == 1 if stand_in else None,
            "device_memory_held_after_close_mib": held}


# -- the plan ------------------------------------------------------------------------------------------------------
def plan(smoke: bool, gpus: int) -> list[tuple[str, float, callable]]:
    """(name, estimated seconds, run(work)) in order of how much each figure tells: every loss at the longest
    sequence (the memory that decides 16 / 24 GB; the first run also generates, so it measures the hand-off),
    then generation speed, vLLM, the shorter sequence, the 8B model, the shorter sequence's other losses."""
    big, (long, short) = ("smoke", (256, 128)) if smoke else ("llama-3.2-3b", (2048, 1024))
    gen_model = big
    # the first run at a length builds the model (once) and generates the pairs; later ones reuse both
    first_s, later_s = (40, 20) if smoke else (170, 45)

    def train(seq, loss, est, shape=big):
        return (f"train/{shape}/seq{seq}/{loss}", est,
                lambda w: run_training(w.model(shape), w.sub(shape), seq, loss, smoke))

    steps = [train(long, loss, first_s if i == 0 else later_s) for i, loss in enumerate(LOSSES)]
    for four_bit in ([False] if smoke else [False, True]):
        steps.append((f"generate/{gen_model}/{'4bit' if four_bit else 'bf16'}/one-copy", 10 if smoke else 60,
                      lambda w, fb=four_bit: run_generation(w.model(gen_model), w.root, fb, "one", smoke)))
    if gpus > 1:
        steps.append((f"generate/{gen_model}/bf16/{gpus}-copies", 60,
                      lambda w: run_generation(w.model(gen_model), w.root, False, "all", smoke)))
    steps.append((f"vllm/{gen_model}", 10 if smoke else 120, lambda w: run_vllm(w.model(gen_model), w.root, smoke)))
    steps.append(train(short, "dpo", first_s if smoke else 120))
    if not smoke:
        steps.append(train(long, "dpo", 240, shape="llama-3.1-8b"))
        steps += [train(short, loss, later_s) for loss in LOSSES[1:]]
    return steps


class Work:
    def __init__(self, root: Path):
        self.root = root

    def model(self, name: str) -> Path:
        return build_model_dir(name, self.root / f"model-{name}")

    def sub(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(exist_ok=True)
        return p


def estimate_for(r: dict) -> float:
    """``axolotl_mipo.memory``'s estimate for a training result: the peak in GiB on CUDA; on the CPU the
    step's memory above the loaded weights in MiB (what the CPU measure sees), for the batch's real width. TRL >=
    1.15's fused LM head runs its Triton kernels on CUDA and its torch fallback on the CPU, which the estimate tells
    apart."""
    from axolotl_mipo.memory import Shape, estimate

    cuda = "peak_reserved_gib" in r

    s = SHAPES[r["shape"]]
    shape = Shape(s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"], s["num_attention_heads"],
                  s["num_key_value_heads"], s["vocab_size"], s["tie_word_embeddings"])
    e = estimate(shape, seq=r["batch_shape"][1], micro_batch=r["batch_shape"][0] // 2, loss=r["loss"],
                 lora_r=r["lora_r"], four_bit=r["four_bit"], compute_bytes=2 if r["bf16"] else 4,
                 optimizer=r["optimizer"], gradient_checkpointing=r["gradient_checkpointing"], triton=cuda)
    return e["peak"] / GIB if cuda else e["step"] / 2**20


def table(results: dict) -> str:
    lines = [f"{'measurement':<40} {'figure':<78}"]
    for name, r in results["measurements"].items():
        if "skipped" in r or "error" in r:
            fig = f"SKIPPED: {r['skipped']}" if "skipped" in r else f"ERROR: {r['error'][:70]}"
        elif name.startswith("train/"):
            fig = f"step {r['step_s']:.2f}s"
            if "peak_reserved_gib" in r:
                fig += (f", peak {r['peak_allocated_gib']:.1f} GiB alloc / {r['peak_reserved_gib']:.1f} reserved, "
                        f"16GB {'ok' if r['fits_16gb'] else 'NO'}, 24GB {'ok' if r['fits_24gb'] else 'NO'}")
            else:
                fig += f", step memory {r['cpu_train_peak_delta_mib']:.0f} MiB ({r['cpu_memory_kind']})"
            if "estimate_gib" in r:
                fig += f"; estimate {r['estimate_gib']:.1f} GiB"
            elif "estimate_mib" in r:
                fig += f"; estimate {r['estimate_mib']:.0f} MiB"
            held = [v for v in r["handoff"]["held_mib"].values()]
            if held:
                fig += f"; hand-off held {max(held):.0f} MiB"
        elif name.startswith("generate/"):
            fig = f"{r['tokens_per_s']:.1f} tokens/s ({r['tokens']} tokens, {r['prompts']} prompts, {r['devices']})"
        elif name.startswith("vllm/"):
            if r["stand_in"]:
                fig = (f"stand-in vllm module {r['version']} (calls checked against its API; no speed figure), "
                       f"engine shut down: {r['engine_shut_down']}")
            else:
                fig = (f"backend {r['backend_tokens_per_s']:.1f} vs raw {r['raw_tokens_per_s']:.1f} tokens/s = "
                       f"{r['ratio']:.2f}x (target >= 0.9: {'ok' if r['ok'] else 'MISSED'}); held after close "
                       f"{r['device_memory_held_after_close_mib']:.0f} MiB")
        else:
            fig = json.dumps(r)[:78]
        lines.append(f"{name:<40} {fig}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=500.0)
    ap.add_argument("--json", default="gpu_check.json")
    ap.add_argument("--workdir", default=None, help="where models and data go (default: a temporary folder)")
    ap.add_argument("--smoke", action="store_true", help="small shapes on the CPU (< 5 minutes)")
    ap.add_argument("--only", nargs="*", default=None, help="run only measurements whose name starts with these")
    a = ap.parse_args(argv)

    start = time.perf_counter()
    import torch

    if a.smoke:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    dev = _device()
    gpus = torch.cuda.device_count() if dev == "cuda" else 0
    meta = {"device": torch.cuda.get_device_name(0) if gpus else "cpu", "gpus": gpus, "smoke": a.smoke,
            "torch": torch.__version__, "budget_s": a.budget_s,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if not a.smoke and dev != "cuda":
        print("no CUDA device: run with --smoke on the CPU")
        return 2
    results = Results(a.json, meta)
    root = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    root.mkdir(parents=True, exist_ok=True)
    work = Work(root)
    for name, est, run in plan(a.smoke, gpus):
        if a.only and not any(name.startswith(p) for p in a.only):
            continue
        elapsed = time.perf_counter() - start
        if elapsed + est > a.budget_s:
            results.put(name, {"skipped": f"budget: {elapsed:.0f}s used, about {est:.0f}s needed, "
                                          f"{a.budget_s:.0f}s in all"})
            continue
        print(f"[{elapsed:6.0f}s] {name} ...", flush=True)
        t = time.perf_counter()
        try:
            r = run(work)
        except Exception as exc:  # one failure must not lose the other figures
            traceback.print_exc()
            r = {"error": f"{type(exc).__name__}: {exc}"}
            _release()
        r["wall_s"] = round(time.perf_counter() - t, 1)
        results.put(name, r)
    results.data["meta"]["total_s"] = round(time.perf_counter() - start, 1)
    results.write()
    print("\n" + table(results.data))
    print(f"\n{results.data['meta']['device']}, total {results.data['meta']['total_s']:.0f}s; figures in {a.json}")
    return 1 if any("error" in r for r in results.data["measurements"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
