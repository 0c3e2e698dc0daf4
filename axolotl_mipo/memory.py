"""GPU memory of a MIPO QLoRA DPO step: an estimate, term by term, until a GPU run measures it.

    python -m axolotl_mipo.memory [--config example_configs/mipo-llama.yml] [--seq 2048] [--json]

Terms (bytes, one GPU, one micro batch of ``B`` pairs, so ``2B`` sequences of ``L`` tokens):

* weights: the linear layers in 4-bit NF4 with double quantisation (0.5 byte per
  weight plus about 0.016 for the quantisation constants, bitsandbytes' block of
  64), the embedding, the LM head (when not tied) and the norms in the compute
  dtype (bitsandbytes leaves them unquantised);
* LoRA: ``r * (in + out)`` per adapted linear, fp32 weights and gradients, and
  the optimizer's two moments (1 byte each for 8-bit AdamW, 4 for AdamW);
* activations under gradient checkpointing: every layer's input kept
  (``2B * L * hidden``), plus one layer recomputed during backward with its
  gradients (about ``2 * 2B * L * (6 hidden + 4 intermediate + 2 kv)``);
  without checkpointing every layer's;
* logits: the policy's ``[2B, L, vocab]`` logits and the log-softmax TRL keeps
  for backward (two tensors in the compute dtype), and their gradient during
  backward;
* the reference forward (DPO, PerCE, RMiPO's ``dpo`` form; adapter disabled,
  no grad) and the extra no-grad forwards of RMiPO (the responses alone, about
  half of each sequence) and PerCE (prompt without context + response, about
  as long): each produces ``[2B, L', vocab]`` logits while the policy's graph
  is still held (MIPODPOTrainer runs them after the policy forward), so the
  largest of them adds to the peak.
* TRL >= 1.15 scores through its fused LM head (``add_fused_lm_head``; detected
  by :func:`axolotl_mipo.compat.trl_fused_lm_head`): no ``[2B, L, vocab]``
  logits exist. Each scoring forward allocates one projection buffer of
  ``min(N, 4096) x 32768`` entries in the compute dtype (TRL's
  ``TOKEN_CHUNK_SIZE`` by ``_CHUNKED_LOGPROB_CHUNK_SIZE``, at that width even
  when the vocabulary is narrower) and keeps the head's input
  (``N x hidden``) for backward; the backward allocates the buffer again and
  the input's fp32 gradient. Where Triton runs (CUDA) the tiles are folded in
  place; elsewhere (the CPU) TRL folds them in torch, which holds about 3
  fp32 tiles of ``min(N, 4096) x min(vocab, 32768)`` in the forward and 7.25
  in the backward (``_forward_tile`` / ``_backward_tile`` in
  ``trl/kernels/chunked_logprob.py``), one more each in bf16. ``policy_logits``
  is then the kept input, and the head's backward or the layer recompute,
  whichever is larger, is ``backward``.

Peak = weights + LoRA + optimizer + checkpoints + policy logits + the largest
of (reference or extra forward, backward's recompute + logits gradient).

What it leaves out: the CUDA context (about 0.5 GiB, outside torch's count),
the allocator's fragmentation (reserved minus allocated, often 5-15%), and
transient 4-bit dequantisation buffers (one weight matrix in the compute dtype
at a time). ``reserved`` in the table adds 10% for fragmentation. These are
estimates: no GPU has run them yet; ``benchmarks/gpu_check.py`` measures them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer of one decoder block (q, k, v, o, gate, up, down)."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]


# the published config.json of each example config's model
SHAPES = {
    "meta-llama/Llama-3.2-3B-Instruct": Shape(3072, 8192, 28, 24, 8, 128256, True),
    "meta-llama/Llama-3.1-8B-Instruct": Shape(4096, 14336, 32, 32, 8, 128256, False),
    "Qwen/Qwen2.5-1.5B-Instruct": Shape(1536, 8960, 28, 12, 2, 151936, True),
}
LOSSES = ("dpo", "rmipo", "perce", "rmipo+perce")
# TRL >= 1.15's fused LM head: tokens and vocabulary entries per projection tile (TRL's TOKEN_CHUNK_SIZE in
# trl/kernels/chunked_logprob.py and _CHUNKED_LOGPROB_CHUNK_SIZE in trl/trainer/utils.py)
FUSED_TOKEN_TILE, FUSED_VOCAB_TILE = 4096, 32768


def fused_head(tokens: int, shape: Shape, compute_bytes: int, *, triton: bool) -> tuple[float, float]:
    """Bytes TRL's fused LM head allocates while it scores ``tokens`` positions: (forward, backward)."""
    n = min(tokens, FUSED_TOKEN_TILE)
    buffer = n * FUSED_VOCAB_TILE * compute_bytes
    if triton:  # the Triton kernels fold each tile in place
        return buffer, buffer + tokens * shape.hidden * 4
    tile = n * min(shape.vocab, FUSED_VOCAB_TILE) * 4  # torch's fold works on fp32 copies of the tile
    upcast = compute_bytes != 4  # ``tile.float()`` copies a bf16 tile
    return buffer + (3 + upcast) * tile, buffer + tokens * shape.hidden * 4 + (7.25 + upcast) * tile


def needs_reference(loss: str, rmipo_form: str = "reference_free") -> bool:
    return loss in ("dpo", "perce") or ("rmipo" in loss and rmipo_form == "dpo")


def estimate(shape: Shape, *, seq: int, micro_batch: int, loss: str = "dpo", lora_r: int = 32,
             four_bit: bool = True, compute_bytes: int = 2, optimizer: str = "paged_adamw_8bit",
             gradient_checkpointing: bool = True, rmipo_form: str = "reference_free",
             precompute_ref_log_probs: bool = False, fused_lm_head: bool | None = None,
             triton: bool = True) -> dict:
    """Bytes of each term and the peak (see the module's docstring). ``fused_lm_head``: whether the trainer
    scores through TRL's fused LM head (``None``: whether the installed TRL does); ``triton``: whether that head
    runs its Triton kernels (CUDA) rather than its torch fallback (CPU)."""
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r}: one of {LOSSES}")
    cb = compute_bytes
    rows = 2 * micro_batch  # chosen and rejected
    tokens = rows * seq
    linear = shape.layers * sum(i * o for i, o in shape.linears())
    embed = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    weights = (linear * (0.5 + 1 / 64 + 4 / (64 * 256)) if four_bit else linear * cb) + embed * cb \
        + (2 * shape.layers + 1) * shape.hidden * cb
    lora_params = shape.layers * sum(lora_r * (i + o) for i, o in shape.linears())
    lora = lora_params * 4 * 2  # fp32 weights + gradients
    moments = 2 * (1 if "8bit" in optimizer else 4)
    opt = lora_params * moments
    per_layer = tokens * (6 * shape.hidden + 4 * shape.intermediate + 2 * shape.kv_dim) * cb
    if gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden * cb
        backward_layer = 2 * per_layer
    else:
        activations = shape.layers * per_layer
        backward_layer = per_layer
    if fused_lm_head is None:
        from axolotl_mipo.compat import trl_fused_lm_head

        fused_lm_head = trl_fused_lm_head()
    if fused_lm_head:
        head, head_backward = fused_head(tokens, shape, cb, triton=triton)
        half, _ = fused_head(tokens // 2, shape, cb, triton=triton)
        policy_logits = tokens * shape.hidden * cb  # the head's input, kept for its backward
        backward = max(backward_layer, head_backward)
    else:
        head = logits = tokens * shape.vocab * cb
        half = logits / 2
        policy_logits = 2 * logits  # logits + the log-softmax kept for backward
        backward = backward_layer + logits  # the logits' gradient
    extra = {}
    if needs_reference(loss, rmipo_form) and not precompute_ref_log_probs:
        extra["reference"] = head + per_layer / 2
    if "rmipo" in loss:  # responses alone: about half of each sequence
        extra["rmipo"] = half + per_layer / 4
    if "perce" in loss:  # prompt without the context + response, both responses
        extra["perce"] = half + per_layer / 4
    transient = max([backward, *extra.values()])
    static = weights + lora + opt
    peak = static + activations + policy_logits + transient
    return {"weights": weights, "lora": lora, "optimizer": opt, "activations": activations,
            "policy_logits": policy_logits, "backward": backward, **{f"extra_{k}": v for k, v in extra.items()},
            "static": static, "step": peak - weights, "peak": peak, "reserved": peak * 1.1}


def from_config(cfg: dict, *, seq: int | None = None, loss: str | None = None, shape: Shape | None = None,
                fused_lm_head: bool | None = None) -> dict:
    """The estimate for an Axolotl YAML (as a dict) with the plugin's ``mipo:`` block."""
    shape = shape or SHAPES.get(cfg.get("base_model"))
    if shape is None:
        raise ValueError(f"no shape known for {cfg.get('base_model')!r}: pass shape=Shape(...)")
    mipo = cfg.get("mipo") or {}
    bf16 = cfg.get("bf16") in (True, "auto") or cfg.get("fp16")
    return estimate(
        shape, seq=seq or cfg.get("sequence_len") or 2048, micro_batch=cfg.get("micro_batch_size") or 1,
        loss=loss or mipo.get("loss") or "dpo", lora_r=cfg.get("lora_r") or 8,
        four_bit=bool(cfg.get("load_in_4bit")), compute_bytes=2 if bf16 else 4,
        optimizer=cfg.get("optimizer") or "adamw_torch",
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing")),
        rmipo_form=mipo.get("rmipo_form") or "reference_free",
        precompute_ref_log_probs=bool(cfg.get("precompute_ref_log_probs")), fused_lm_head=fused_lm_head,
    )


def table(configs: list[str], seqs=(1024, 2048), shapes: dict | None = None,
          fused_lm_head: bool | None = None) -> list[dict]:
    """Rows of (config, model, seq, loss, GiB, fits 16 / 24 GB) for docs/gpu-memory.md."""
    import yaml

    rows = []
    for path in configs:
        with open(path) as f:
            cfg = yaml.safe_load(f)
        models = {cfg["base_model"]: SHAPES[cfg["base_model"]]} if cfg["base_model"] in SHAPES else {}
        if "Llama-3.2-3B" in cfg["base_model"]:  # the same settings on the 8B model
            models["meta-llama/Llama-3.1-8B-Instruct"] = SHAPES["meta-llama/Llama-3.1-8B-Instruct"]
        for model, shape in (shapes or models).items():
            for seq in seqs:
                for loss in LOSSES:
                    e = from_config(cfg, seq=seq, loss=loss, shape=shape, fused_lm_head=fused_lm_head)
                    need = e["reserved"] + 0.5 * GIB  # + CUDA context
                    rows.append({"config": path, "model": model, "seq": seq, "loss": loss,
                                 "micro_batch": cfg.get("micro_batch_size"), "peak_gib": e["peak"] / GIB,
                                 "need_gib": need / GIB, "fits_16gb": need <= 16e9, "fits_24gb": need <= 24e9})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=["example_configs/mipo-llama.yml", "example_configs/mipo-qwen.yml"])
    ap.add_argument("--seq", nargs="+", type=int, default=[1024, 2048])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--scoring", choices=("installed", "logits", "fused"), default="installed",
                    help="how the trainer scores tokens: from the logits (TRL < 1.15), through TRL's fused LM head "
                    "(TRL >= 1.15), or as the installed TRL does")
    a = ap.parse_args(argv)
    rows = table(a.config, a.seq, fused_lm_head={"installed": None, "logits": False, "fused": True}[a.scoring])
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| model | micro batch | seq | loss | peak (est.) | with context + fragmentation | 16 GB | 24 GB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model'].split('/')[-1]} | {r['micro_batch']} | {r['seq']} | {r['loss']} | "
              f"{r['peak_gib']:.1f} GiB | {r['need_gib']:.1f} GiB | {'yes' if r['fits_16gb'] else 'no'} | "
              f"{'yes' if r['fits_24gb'] else 'no'} |")


__all__ = ["SHAPES", "Shape", "estimate", "from_config", "fused_head", "table"]

if __name__ == "__main__":
    main()
