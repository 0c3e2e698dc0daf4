"""On-disk cache of generated responses, resumable and safe to interrupt.

Layout: ``<root>/<key>/manifest.json`` plus ``shard-NNNNNN.jsonl`` files. The
folder name ``<key>`` is a hash of everything that determines a response other
than the prompt itself: the model weights' fingerprint, the tokenizer and chat
template, the generation settings and the seed. Inside, each response is
stored under the SHA-256 of its fully rendered prompt text, so a changed
dataset reuses what it still shares and generates only what is new, and a
changed model or setting lands in another folder (regeneration, never silent
reuse).

Writes are atomic: a shard is written to a temporary file and renamed, so a
process killed mid-write leaves either the whole shard or nothing. Shards are
JSON Lines; nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def stable_hash(obj: Any, n: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:n]


def prompt_key(prompt_text: str) -> str:
    return hashlib.sha256(prompt_text.encode("utf-8", "surrogatepass")).hexdigest()


def _file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """Size plus the first and last MiB: catches retrained or swapped weights without hashing GBs."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > 2 * chunk:
            f.seek(-chunk, os.SEEK_END)
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


WEIGHTS_RECORD = "mipo_weights.json"


def _model_files(p: Path) -> list[Path]:
    return sorted(
        f for f in p.iterdir()
        if f.is_file() and (f.suffix in (".safetensors", ".bin", ".pt", ".gguf") or f.name == "config.json")
    )


def weights_sha256(model_dir: str | Path, chunk: int = 1 << 24) -> str:
    """SHA-256 over every weight and config file, whole (one sequential read of the checkpoint)."""
    h = hashlib.sha256()
    for f in _model_files(Path(model_dir)):
        h.update(f.name.encode() + b"\0" + str(f.stat().st_size).encode() + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def record_weights(model_dir: str | Path) -> str:
    """Write the folder's full content hash next to its weights, where :func:`model_fingerprint` finds it.

    The sampled fingerprint (size, first and last MiB of each file) misses a change confined to the
    middle of a large file, which is exactly what merging a LoRA adapter into a few projections does.
    A tool that writes a checkpoint it will generate from (``axolotl-mipo rounds``) records the whole
    hash once, so a cache keyed on that model can never outlive a change to it.
    """
    p = Path(model_dir)
    digest = weights_sha256(p)
    record = {"sha256": digest, "files": {f.name: _file_fingerprint(f) for f in _model_files(p)}}
    fd, tmp = tempfile.mkstemp(dir=p, prefix=".tmp-", suffix=".json")
    os.chmod(tmp, 0o644)  # readable like the weights beside it (mkstemp makes 0600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(record, indent=2))
    os.replace(tmp, p / WEIGHTS_RECORD)
    return digest


def model_fingerprint(name_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """Identify a model: files' fingerprints for a local folder, name + revision for a hub model.

    A folder with a :func:`record_weights` record whose sampled fingerprints still match its files
    also contributes the full content hash; a folder without one keys exactly as before, so existing
    caches keep hitting. A stale record (files changed since) is ignored: the sampled fingerprints
    have already changed the key.
    """
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        files = {f.name: _file_fingerprint(f) for f in _model_files(p)}
        out: dict[str, Any] = {"path": str(p.resolve()), "files": files}
        record = p / WEIGHTS_RECORD
        if record.is_file():
            try:
                stored = json.loads(record.read_text(encoding="utf-8"))
            except ValueError:
                stored = {}
            if stored.get("files") == files and stored.get("sha256"):
                out["sha256"] = stored["sha256"]
        return out
    return {"name": name_or_path, "revision": revision or "main"}


def tokenizer_fingerprint(tokenizer) -> dict[str, Any]:
    vocab = tokenizer.get_vocab()
    return {
        "class": type(tokenizer).__name__,
        "vocab": stable_hash(sorted(vocab.items())),
        "chat_template": stable_hash(getattr(tokenizer, "chat_template", None) or ""),
        "special": stable_hash({k: str(v) for k, v in tokenizer.special_tokens_map.items()}),
    }


def atomic_write(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` so that a reader (or a resumed run after a kill) sees the old file or the whole
    new one, never a part: a temporary file in the same folder, fsynced, then renamed over ``path``. ``mode``:
    the file's permissions (``mkstemp`` creates 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass
class CachedResponse:
    text: str
    num_tokens: int


class GenerationCache:
    """Responses keyed by prompt, under a folder keyed by everything else."""

    def __init__(self, root: str | Path, key_parts: Mapping[str, Any]):
        self.key_parts = dict(key_parts)
        self.key = stable_hash(self.key_parts)
        self.dir = Path(root).expanduser() / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if manifest.exists():
            stored = json.loads(manifest.read_text(encoding="utf-8"))
            if stored.get("key_parts") != json.loads(json.dumps(self.key_parts, default=str)):
                raise RuntimeError(
                    f"generation cache {self.dir} holds a manifest for other settings; delete the folder"
                )
        else:
            atomic_write(manifest, json.dumps({"key": self.key, "key_parts": self.key_parts},
                                              indent=2, default=str))
        self._entries: dict[str, CachedResponse] = {}
        self._loaded: set[str] = set()
        self._next_shard = 0
        self._load()

    # -- reading -------------------------------------------------------------
    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.jsonl"))

    def _load(self) -> None:
        for shard in self._shards():
            if shard.name in self._loaded:
                continue
            self._loaded.add(shard.name)
            self._next_shard = max(self._next_shard, int(shard.stem.split("-")[1]) + 1)
            with shard.open(encoding="utf-8") as f:
                for line in f:
                    # a shard is renamed into place only when complete, so every line parses
                    rec = json.loads(line)
                    self._entries[rec["k"]] = CachedResponse(rec["r"], int(rec.get("n", 0)))

    def reload(self) -> None:
        """Read shards other writers (ranks) added since this cache was opened."""
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> CachedResponse | None:
        return self._entries.get(key)

    # -- writing -------------------------------------------------------------
    def add_many(self, items: Iterable[tuple[str, str, int]]) -> None:
        """Persist ``(key, text, num_tokens)`` triples as one new shard."""
        items = [(k, t, n) for k, t, n in items if k not in self._entries]
        if not items:
            return
        lines = "".join(
            json.dumps({"k": k, "r": t, "n": n}, ensure_ascii=False) + "\n" for k, t, n in items
        )
        # a random suffix keeps shards from concurrent writers (ranks) apart
        name = f"shard-{self._next_shard:06d}-{uuid.uuid4().hex[:8]}.jsonl"
        atomic_write(self.dir / name, lines)
        self._loaded.add(name)
        self._next_shard += 1
        for k, t, n in items:
            self._entries[k] = CachedResponse(t, n)
