import atexit
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mipo-strategy-example"


def _expose_experiments() -> str:
    """The sys.path entry from which ``experiments`` (the studies and task generators, not in the wheel) imports.

    Usually the repository root is already on the path. CI's wheel step runs from outside the checkout
    without PYTHONPATH, and the repository root must stay off the path there: its axolotl_mipo/ would
    shadow the installed wheel under test. So a folder holding only a link named ``experiments`` goes on
    the path instead; the studies' subprocesses get it through PYTHONPATH (the ``experiments_path`` fixture)."""
    spec = importlib.util.find_spec("experiments")
    if spec is not None and spec.origin and Path(spec.origin).resolve() == REPO / "experiments" / "__init__.py":
        return str(Path(spec.origin).parents[1])
    shim = Path(tempfile.mkdtemp(prefix="mipo-experiments-"))
    atexit.register(shutil.rmtree, shim, True)
    (shim / "experiments").symlink_to(REPO / "experiments", target_is_directory=True)
    sys.path.insert(0, str(shim))
    return str(shim)


EXPERIMENTS_PATH = _expose_experiments()


@pytest.fixture(scope="session")
def experiments_path() -> str:
    """A PYTHONPATH entry exposing ``experiments`` and nothing else of the checkout (see ``_expose_experiments``)."""
    return EXPERIMENTS_PATH


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama + tokenizer built locally once per test session."""
    from axolotl_mipo.testing.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.eval()
    return model, tok


@pytest.fixture(scope="session")
def axolotl_cli():
    """Run the real ``axolotl`` CLI of this environment; returns its log, failing the test on a non-zero exit."""

    def run(args, cwd, timeout=600):
        env = dict(os.environ)
        # `axolotl train` re-launches itself through `accelerate`, which must be on PATH
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "axolotl"), *args],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-6000:]
        return log

    return run


@pytest.fixture()
def tiny_mipo_config(tmp_path, tiny_model_dir):
    """Write ``example_configs/mipo-tiny-cpu.yml`` for the tiny model into ``tmp_path`` (2 steps, 12 new
    tokens); keyword arguments update the ``mipo:`` block. Returns the YAML's path."""

    def make(**mipo):
        cfg = yaml.safe_load((REPO / "example_configs" / "mipo-tiny-cpu.yml").read_text())
        cfg["base_model"] = str(tiny_model_dir)
        cfg["output_dir"] = str(tmp_path / "out")
        cfg["dataset_prepared_path"] = str(tmp_path / "prepared")
        cfg["mipo"]["datasets"][0]["path"] = str(REPO / "example_configs" / "data" / "personas.jsonl")
        cfg["mipo"]["generation"]["max_new_tokens"] = 12
        cfg["mipo"].update(mipo)
        cfg["max_steps"] = 2
        path = tmp_path / "cfg.yml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.fixture()
def context_blind_model(tiny_model_and_tokenizer):
    """A bigram "model" over the tiny tokenizer: logits depend on the current token only, so nothing before
    the response (the user context) can change any score."""
    from types import SimpleNamespace

    import torch

    class Bigram(torch.nn.Module):
        def __init__(self, vocab: int):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g))

        def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
            return SimpleNamespace(logits=self.table[input_ids])

    return Bigram(len(tiny_model_and_tokenizer[1]))


def _installed_from_here() -> bool:
    try:
        mod = importlib.import_module("mipo_strategy_example")
    except ImportError:
        return False
    eps = importlib.metadata.entry_points(group="axolotl_mipo.pairing")
    return (Path(mod.__file__).resolve().is_relative_to(EXAMPLE.resolve())
            and any(ep.name == "shuffled_query" for ep in eps))


@pytest.fixture(scope="session")
def example_package():
    """``pip install -e examples/mipo-strategy-example`` into this interpreter's environment (once).

    Under ``pytest -n`` (CI) every worker runs session fixtures, so the install holds a lock on this
    environment: two concurrent ``pip install -e`` of one package into one venv can leave it half-written."""
    import fcntl
    import hashlib

    env = hashlib.sha1(sys.prefix.encode()).hexdigest()[:12]
    lock = Path(tempfile.gettempdir()) / f"mipo-example-install-{env}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            return _install_example()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _install_example():
    if not _installed_from_here():
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
            pytest.skip("pip is not available in this environment")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE)],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        importlib.invalidate_caches()
        # the editable install's .pth file is read by new interpreters; this one needs the path itself
        src = str(EXAMPLE / "src")
        if src not in sys.path:
            sys.path.append(src)
    assert _installed_from_here()
    return importlib.import_module("mipo_strategy_example")
