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
    from trl.trainer.dpo_trainer import DPOTrainer

    msg = compat.liger_refusal("perce")
    if hasattr(DPOTrainer, "_compute_loss_liger"):  # TRL 1.9: the fused loss never calls _compute_loss
        assert "silently train plain DPO" in msg
    else:  # TRL 1.14: _compute_loss runs the chunked path itself
        assert "without logits" in msg
