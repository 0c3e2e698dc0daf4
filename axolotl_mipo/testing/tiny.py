"""Build a tiny Llama model and tokenizer locally, with no hub access.

Tests, the CPU demo and the benchmarks need a real ``LlamaForCausalLM`` with a
real chat template, but nothing can be downloaded here. This module trains a
small byte-level BPE tokenizer on text generated in code, attaches a
Llama-3-style chat template, builds a randomly initialised Llama of the requested
size and writes both with ``save_pretrained`` so that Axolotl loads the folder
exactly as it would load a hub checkpoint.

Usage::

    python -m axolotl_mipo.testing.tiny OUT_DIR [--hidden 64 --layers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

BOS = "<|begin_of_text|>"
EOS = "<|eot_id|>"
PAD = "<|finetune_right_pad_id|>"
HEADER_START = "<|start_header_id|>"
HEADER_END = "<|end_header_id|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, HEADER_START, HEADER_END, "<|end_of_text|>"]

# Same shape as Llama-3's template (system turn optional, generation prompt
# opens an assistant header), so the code paths that render prompts for the
# tiny model are the ones a real Llama-3 Instruct checkpoint takes.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_SUBJECTS = ["I", "You", "The user", "My friend", "Our team", "The teacher", "A reader"]
_VERBS = ["likes", "prefers", "asks about", "writes", "enjoys", "avoids", "needs"]
_OBJECTS = [
    "short answers", "long detailed explanations", "formal language", "casual chat",
    "bullet points", "numbered lists", "cooking recipes", "football news", "python code",
    "jazz music", "travel tips", "gardening advice", "math puzzles", "poetry", "history facts",
]
_QUESTIONS = [
    "What should I cook tonight?", "Tell me about the weekend.", "How do I learn faster?",
    "Recommend a book.", "Explain photosynthesis.", "Plan my trip.", "Write a greeting.",
    "What is a good hobby?", "Summarize the news.", "Give me advice on sleep.",
]


_ALWAYS = ["system", "user", "assistant", "context", "query", "0123456789", ".,;:!?'\"()[]{}-_/"]


def synthetic_corpus(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """Lines of English-like text that cover the words the tests and demo use."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        kind = rng.random()
        if kind < 0.5:
            lines.append(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}.")
        elif kind < 0.8:
            lines.append(rng.choice(_QUESTIONS))
        else:
            lines.append(" ".join(rng.choice(_OBJECTS) for _ in range(rng.randint(2, 6))))
    lines.extend(_ALWAYS)
    return lines


@dataclass
class TinyModelSpec:
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 1024
    max_position_embeddings: int = 1024
    seed: int = 0


def build_tokenizer(vocab_size: int = 1024, seed: int = 0, corpus: Sequence[str] | None = None):
    """Train a byte-level BPE tokenizer on the synthetic corpus (a second or so).

    ``corpus`` (optional) replaces the built-in :func:`synthetic_corpus` with the
    given lines (e.g. a task's own text, so its words become single tokens); the
    chat roles, digits and punctuation are always added. Bytes outside the corpus
    still encode (byte-level BPE), only less compactly.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    if corpus is None:
        lines = synthetic_corpus(seed=seed)
    else:
        lines = [str(x) for x in corpus] + list(_ALWAYS)
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, spec: TinyModelSpec):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny_model(
    out_dir: str | Path,
    spec: TinyModelSpec | None = None,
    overwrite: bool = False,
    corpus: Sequence[str] | None = None,
) -> Path:
    """Write a tiny Llama + tokenizer to ``out_dir`` (skipped if already built with the same spec).

    ``corpus``: train the tokenizer on these lines instead of the built-in
    corpus (see :func:`build_tokenizer`); a hash of it joins the stamp, so a
    different corpus rebuilds.
    """
    spec = spec or TinyModelSpec()
    out = Path(out_dir)
    stamp = out / "tiny_spec.json"
    want = asdict(spec)
    if corpus is not None:
        corpus = [str(x) for x in corpus]
        want["corpus_sha256"] = hashlib.sha256("\n".join(corpus).encode("utf-8")).hexdigest()
    if not overwrite and stamp.exists() and json.loads(stamp.read_text()) == want:
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab_size, spec.seed, corpus=corpus)
    model = build_model(tokenizer, spec)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    stamp.write_text(json.dumps(want))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    spec = TinyModelSpec(
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=max(1, a.heads // 2),
        intermediate_size=a.intermediate or 2 * a.hidden,
        seed=a.seed,
    )
    print(build_tiny_model(a.out_dir, spec, overwrite=a.overwrite))


if __name__ == "__main__":
    main()
