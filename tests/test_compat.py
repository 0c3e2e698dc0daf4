"""Version differences (axolotl_mipo.compat) against the Axolotl / TRL that is installed."""

import pytest
import torch

from axolotl_mipo import compat


@pytest.fixture()
def multi_process_env(monkeypatch):
    """What torchrun sets for rank 0 of 2 on one node: the case where Axolotl asks about GPU peer access."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    from axolotl.utils import environment

    # Axolotl's own function (an earlier load_cfg in this session may have guarded it), restored after the test
    check = environment.check_cuda_p2p_support
    monkeypatch.setattr(environment, "check_cuda_p2p_support", getattr(check, "__wrapped__", check))
    return environment


def _no_driver(monkeypatch, available=False):
    def peer(a, b):  # what torch.cuda.can_device_access_peer raises on a CUDA build without a driver
        raise RuntimeError("Found no NVIDIA driver on your system.")

    monkeypatch.setattr(torch.cuda, "can_device_access_peer", peer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)


def test_axolotl_peer_check_raises_without_a_driver_and_the_shim_answers_like_a_cpu_build(
        multi_process_env, monkeypatch):
    env = multi_process_env
    _no_driver(monkeypatch)
    with pytest.raises(RuntimeError, match="NVIDIA driver"):
        env.check_cuda_p2p_ib_support()  # Axolotl's own check, unpatched: why the shim exists
    assert compat.patch_axolotl_peer_check()
    assert compat.patch_axolotl_peer_check()  # idempotent: wrapped once
    assert env.check_cuda_p2p_support.__wrapped__.__name__ == "check_cuda_p2p_support"
    assert not hasattr(env.check_cuda_p2p_support.__wrapped__, "_mipo_guarded")
    assert env.check_cuda_p2p_ib_support() is True


def test_peer_check_shim_keeps_the_error_when_a_gpu_is_usable(multi_process_env, monkeypatch):
    env = multi_process_env
    _no_driver(monkeypatch, available=True)
    compat.patch_axolotl_peer_check()
    with pytest.raises(RuntimeError, match="NVIDIA driver"):
        env.check_cuda_p2p_ib_support()


def test_peer_check_shim_keeps_real_answers(multi_process_env, monkeypatch):
    env = multi_process_env
    monkeypatch.setattr(torch.cuda, "can_device_access_peer", lambda a, b: False)
    compat.patch_axolotl_peer_check()
    assert env.check_cuda_p2p_support() is False


def test_main_process_first_is_what_trl_tokenizes_under():
    from trl.trainer import dpo_trainer

    ctx = compat.main_process_first()
    if hasattr(dpo_trainer, "global_then_local_main_first"):  # TRL >= 1.13
        assert type(ctx).__name__ == type(dpo_trainer.global_then_local_main_first()).__name__
    with ctx:  # single process: enters and leaves without waiting
        pass


def test_tp_size_is_trls_divisor():
    from types import SimpleNamespace

    assert compat.tp_size(SimpleNamespace()) == 1  # TRL 1.9 sets none
    assert compat.tp_size(SimpleNamespace(_tp_size=2)) == 2


@pytest.mark.parametrize("loss", ["rmipo", "perce", "rmipo+perce"])
def test_liger_refusal_names_the_key_and_the_installed_trl(loss):
    from importlib.metadata import version

    msg = compat.liger_refusal(loss)
    assert "dpo_use_liger_kernel" in msg and f"mipo.loss {loss}" in msg and version("trl") in msg
    assert compat.liger_refusal("dpo") is None


def test_liger_refusal_reason_matches_trls_liger_path():
    from trl.trainer import dpo_trainer

    msg = compat.liger_refusal("perce")
    if hasattr(dpo_trainer.DPOTrainer, "_compute_loss_liger"):  # TRL 1.9: the fused loss never calls _compute_loss
        assert "silently train plain DPO" in msg
    elif hasattr(dpo_trainer, "add_fused_lm_head"):  # TRL >= 1.15: layer kernels only, our loss would run
        assert "not been tested on a GPU" in msg
    else:  # TRL 1.14: _compute_loss runs the chunked path itself
        assert "without logits" in msg


def test_check_liger_raises_the_refusal_and_nothing_else():
    from axolotl_mipo.errors import MIPOConfigError

    with pytest.raises(MIPOConfigError, match=r"dpo_use_liger_kernel: true.*mipo\.loss rmipo"):
        compat.check_liger(True, "rmipo")
    compat.check_liger(False, "rmipo")
    compat.check_liger(True, "dpo")


def test_fused_lm_head_is_detected_by_what_trls_dpo_trainer_imports():
    from trl.trainer import dpo_trainer, utils

    assert compat.trl_fused_lm_head() == hasattr(utils, "add_fused_lm_head")
    if compat.trl_fused_lm_head():  # the trainer patches its models in __init__, before it precomputes
        import inspect

        assert "add_fused_lm_head(" in inspect.getsource(dpo_trainer.DPOTrainer.__init__)


# --------------------------------------------------------------------------- scoring
def _tiny_lm(vocab=37):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def _float64_reference(model, input_ids, attention_mask):
    """log p, entropy, mean logit and argmax of every next token, from the logits in float64."""
    import copy

    with torch.no_grad():
        logits = copy.deepcopy(model).double()(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    logp = torch.log_softmax(logits, -1)
    labels = input_ids[:, 1:]
    return (logp.gather(-1, labels[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1), logits.mean(-1),
            logits.argmax(-1) == labels)


@pytest.mark.parametrize("fused", [False, True], ids=["logits", "trl-fused-lm-head"])
def test_score_tokens_match_the_float64_reference(fused):
    """Both scoring paths, ours from the logits and TRL's fused LM head (TRL >= 1.15, on the model TRL patches), give
    the float64 log-probs and statistics on the scored tokens, zero elsewhere, and the same gradient."""
    if fused and not compat.trl_fused_lm_head():
        pytest.skip("this TRL has no fused LM head (TRL < 1.15); the overlay CI leg runs it")
    model = _tiny_lm()
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 37, (4, 11), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :3] = 0  # left padding
    score_mask = torch.zeros_like(input_ids)
    score_mask[:, 5:] = 1
    score_mask[2, 8:] = 0
    ref_logp, ref_ent, ref_mean, ref_top1 = _float64_reference(model, input_ids, attention_mask)
    if fused:
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    scores, _ = compat.score_tokens(model, kwargs, score_mask, fused=fused, stats=True)
    m = score_mask[:, 1:].bool()
    assert scores.logps.shape == m.shape
    torch.testing.assert_close(scores.logps.double()[m], ref_logp[m], atol=1e-5, rtol=1e-5)
    assert torch.all(scores.logps[~m] == 0)
    torch.testing.assert_close(scores.entropy.double()[m], ref_ent[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores.mean_logits.double()[m], ref_mean[m], atol=1e-5, rtol=1e-5)
    assert torch.equal(scores.is_top1.bool()[m], ref_top1[m])
    assert not scores.entropy.requires_grad and scores.logps.requires_grad

    scores.logps.sum().backward()
    grad = model.lm_head.weight.grad.clone()
    plain = _tiny_lm()
    logits = plain(**kwargs).logits[:, :-1]
    expected = torch.log_softmax(logits.double(), -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    expected.masked_fill(~m, 0).sum().backward()
    torch.testing.assert_close(grad, plain.lm_head.weight.grad, atol=1e-5, rtol=1e-4)


def test_score_tokens_without_stats_returns_log_probs_only():
    model = _tiny_lm()
    ids = torch.randint(0, 37, (2, 6), generator=torch.Generator().manual_seed(2))
    scores, outputs = compat.score_tokens(model, {"input_ids": ids}, torch.ones_like(ids), fused=False)
    assert scores.entropy is None and scores.mean_logits is None and scores.is_top1 is None
    assert outputs.logits.shape == (2, 6, 37)

def test_trl_range_admits_every_tested_trl_and_nothing_newer():
    """pyproject's trl range is widened only as far as CI proves: every TRL a stack or the overlay leg runs is in
    it, the next minor release after the newest is not, and .ci/run's overlay leg runs the newest."""
    import re
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.version import Version

    repo = Path(__file__).resolve().parents[1]
    with open(repo / "pyproject.toml", "rb") as f:
        deps = [Requirement(d) for d in tomllib.load(f)["project"]["dependencies"]]
    spec = next(d.specifier for d in deps if d.name == "trl")
    tested = [v["trl"] for v in compat.TESTED.values()] + [v for vs in compat.TESTED_AHEAD.values() for v in vs]
    assert all(spec.contains(v) for v in tested), (str(spec), tested)
    newest = max(map(Version, tested))
    assert not spec.contains(f"{newest.major}.{newest.minor + 1}.0"), str(spec)
    ci = (repo / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^TRL_AHEAD=(\S+)$", ci, flags=re.M).group(1) == str(newest)
