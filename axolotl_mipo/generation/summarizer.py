"""A summarizer other than the base model for ``context_builder: preference_summary``.

``mipo.summary.summarizer`` names a model folder / hub model, or a PEFT adapter folder (one with
``adapter_config.json``, e.g. the output of a POPI summarizer run) that is merged into ``base_model``.
It generates through the ``hf`` backend with ``mipo.generation``'s settings, and its identity (the
model's fingerprint, plus the adapter's) is part of the summary cache key, so summaries written by
different summarizers are never mixed. It must share the run's tokenizer: the summary prompts are
rendered with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from axolotl_mipo.errors import MIPOConfigError

LOG = logging.getLogger("axolotl_mipo.summary")


class _CfgWith:
    """``cfg`` with some keys overridden (attribute and ``get`` access, as Axolotl's DictDefault)."""

    def __init__(self, cfg, **override):
        self._cfg, self._override = cfg, override

    def __getattr__(self, key):
        if key in self._override:
            return self._override[key]
        return getattr(self._cfg, key)

    def get(self, key, default=None):
        if key in self._override:
            return self._override[key]
        return self._cfg.get(key, default)


def is_adapter(path: str) -> bool:
    return os.path.isfile(os.path.join(os.path.expanduser(path), "adapter_config.json"))


def adapter_fingerprint(path: str) -> dict:
    """The adapter's config and weights, hashed (a retrained adapter in the same folder is another summarizer)."""
    folder = Path(path).expanduser()
    files = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and (f.name == "adapter_config.json" or f.name.startswith("adapter_model")):
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            files[f.name] = h.hexdigest()[:16]
    return {"path": str(folder.resolve()), "files": files}


def _load_with_adapter(load, adapter: str):
    from peft import PeftModel

    model = load()
    LOG.info(f"preference_summary: merging the summarizer adapter {adapter}")
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.eval()
    return model


def _check_tokenizer(path: str, tokenizer) -> None:
    folder = Path(path).expanduser()
    if not (folder / "tokenizer_config.json").is_file():
        return
    from transformers import AutoTokenizer

    from axolotl_mipo.generation.cache import tokenizer_fingerprint

    own = AutoTokenizer.from_pretrained(str(folder))
    mine, theirs = tokenizer_fingerprint(tokenizer), tokenizer_fingerprint(own)
    if mine["vocab"] != theirs["vocab"] or mine["chat_template"] != theirs["chat_template"]:
        raise MIPOConfigError(
            f"mipo.summary.summarizer {path!r} has another tokenizer or chat template than the run's; the summary "
            "prompts are rendered with the run's, so use a summarizer trained from the same base_model"
        )


def summarizer_backend(cfg, mipo_cfg, tokenizer):
    """An ``hf`` backend that generates with ``mipo.summary.summarizer`` (loaded at its first use)."""
    from axolotl_mipo.generation.hf import HFBackend

    path = mipo_cfg.summary.summarizer
    if mipo_cfg.generation.backend != "hf":
        raise MIPOConfigError("mipo.summary.summarizer generates with the hf backend; set mipo.generation.backend: hf")
    adapter = is_adapter(path)
    if adapter or os.path.isdir(os.path.expanduser(path)):
        _check_tokenizer(path, tokenizer)
    if adapter:
        backend = HFBackend.from_config(cfg, mipo_cfg, tokenizer)
        fp = adapter_fingerprint(path)
        for copy in (backend, *backend.replicas):
            # the base model's loader, then the adapter merged in; the key names both
            copy._model._load = (lambda load=copy._model._load: _load_with_adapter(load, path))
            copy.model_id = {**copy.model_id, "adapter": fp}
        return backend
    return HFBackend.from_config(_CfgWith(cfg, base_model=path, revision_of_model=None), mipo_cfg, tokenizer)
