"""MIPODPOTrainer on the tiny local Llama with LoRA: every loss trains, logs its metrics, and reduces to DPO."""

import math

import pytest
import torch

from axolotl_mipo.errors import MIPOConfigError

PERCE_METRICS = ("perce/weight_mean", "perce/clipped_frac", "perce/pir_mean", "perce/aux_loss")
RMIPO_METRICS = ("rmipo/gamma", "rmipo/dpmi", "rmipo/pmi_chosen", "rmipo/pmi_rejected")

TOPICS = [("jazz music", "What should I cook tonight?"), ("poetry", "Recommend a book."),
          ("python code", "Plan my trip."), ("football news", "Tell me about the weekend.")]


def _rows(n=4, with_nc=True):
    rows = []
    for i in range(n):
        like, q = TOPICS[i % len(TOPICS)]
        row = {
            "prompt": [{"role": "system", "content": f"The user likes {like}."}, {"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": f"You like {like}, so here is an idea with {like}."}],
            "rejected": [{"role": "assistant", "content": "Here is a generic answer." + " ok" * i}],
            "mipo_row": i,
            "mipo_meta": "{}",
        }
        if with_nc:
            row["prompt_no_context"] = [{"role": "user", "content": q}]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from axolotl_mipo.trainer import MIPODPOConfig, MIPODPOTrainer

    return {
        "dir": tiny_model_dir,
        "out": str(tmp_path_factory.mktemp("trainer-out")),
        "tok": AutoTokenizer.from_pretrained(tiny_model_dir),
        "ds": Dataset.from_list(_rows()),
        "Config": MIPODPOConfig,
        "Trainer": MIPODPOTrainer,
    }


def _make(env, trainer_cls=None, dataset=None, lora_seed=None, **overrides):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(env["dir"])
    kwargs = dict(output_dir=env["out"], per_device_train_batch_size=2, max_steps=2, logging_steps=1,
                  report_to=[], max_length=48, learning_rate=5e-3, use_cpu=True, save_strategy="no",
                  dataloader_num_workers=0, seed=0)
    kwargs.update(overrides)
    args = env["Config"](**kwargs)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                      init_lora_weights=lora_seed is None)
    if lora_seed is not None:  # a random adapter makes policy and reference differ from step 0
        torch.manual_seed(lora_seed)
    return (trainer_cls or env["Trainer"])(model=model, args=args, train_dataset=dataset or env["ds"],
                                           processing_class=env["tok"], peft_config=lora)


CASES = {
    "dpo": ({}, ()),
    "rmipo-reference_free": ({"mipo_loss": "rmipo"}, RMIPO_METRICS),
    "rmipo-dpo": ({"mipo_loss": "rmipo", "mipo_rmipo_form": "dpo", "precompute_ref_log_probs": True}, RMIPO_METRICS),
    "rmipo-dpo-reference-pmi": ({"mipo_loss": "rmipo", "mipo_rmipo_form": "dpo", "mipo_rmipo_pmi_from": "reference",
                                "precompute_ref_log_probs": True}, RMIPO_METRICS),
    "rmipo-reference_free-reference-pmi": ({"mipo_loss": "rmipo", "mipo_rmipo_pmi_from": "reference",
                                           "precompute_ref_log_probs": True}, RMIPO_METRICS),
    "perce-policy": ({"mipo_loss": "perce"}, PERCE_METRICS),
    "perce-reference": ({"mipo_loss": "perce", "mipo_perce_weights_from": "reference",
                         "precompute_ref_log_probs": True}, PERCE_METRICS),
    "rmipo+perce-grad-accum": ({"mipo_loss": "rmipo+perce", "mipo_rmipo_form": "dpo",
                                "mipo_perce_token_weighted_dpo": False, "per_device_train_batch_size": 1,
                                "gradient_accumulation_steps": 2}, RMIPO_METRICS + PERCE_METRICS),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_loss_trains_and_logs_finite_metrics(env, case):
    overrides, expected = CASES[case]
    trainer = _make(env, **overrides)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h and "train_loss" not in h]
    assert len(steps) == 2
    for h in steps:
        for key in ("loss", "rewards/margins", "logps/chosen", *expected):
            assert key in h, f"{key} not logged: {sorted(h)}"
            assert math.isfinite(h[key]), (key, h[key])
    changed = any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert changed, "the adapter did not move"
    if expected == PERCE_METRICS:
        for h in steps:
            assert 0.0 <= h["perce/clipped_frac"] <= 1.0
            assert 0.8 - 1e-6 <= h["perce/weight_mean"] <= 5.0 + 1e-6
    if "rmipo/gamma" in expected:
        for h in steps:
            assert 0.3 - 1e-6 <= h["rmipo/gamma"] <= 1.6 + 1e-6


def _first_batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def _loss(trainer, batch):
    trainer.model.train()
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


def test_dpo_equals_axolotl_dpo_trainer(env):
    from axolotl.core.trainers.dpo.trainer import AxolotlDPOTrainer

    ours = _make(env, lora_seed=3)
    plain = _make(env, trainer_cls=AxolotlDPOTrainer, lora_seed=3)
    batch = _first_batch(plain)
    assert set(_first_batch(ours)) == set(batch)  # loss=dpo adds nothing to the batch
    reference = _loss(plain, batch)
    assert reference != pytest.approx(math.log(2), abs=1e-4)  # the random adapter makes the check meaningful
    assert _loss(ours, batch) == reference


@pytest.mark.parametrize("hook", ["perce", "rmipo-dpo"])
def test_hooks_with_neutral_settings_equal_dpo(env, hook):
    """PerCE with all weights 1 and alpha 0, RMiPO's DPO form with gamma 0: both give DPO's loss."""
    from axolotl.core.trainers.dpo.trainer import AxolotlDPOTrainer

    if hook == "perce":
        opts = {"mipo_loss": "perce", "mipo_perce_clip_min": 1.0, "mipo_perce_clip_max": 1.0, "mipo_perce_alpha": 0.0}
    else:
        opts = {"mipo_loss": "rmipo", "mipo_rmipo_form": "dpo", "mipo_rmipo_gamma_min": 0.0,
                "mipo_rmipo_gamma_max": 0.0}
    ours = _make(env, lora_seed=5, **opts)
    plain = _make(env, trainer_cls=AxolotlDPOTrainer, lora_seed=5)
    batch = _first_batch(ours)
    plain_batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "completion_mask")}
    assert _loss(ours, batch) == pytest.approx(_loss(plain, plain_batch), abs=1e-6)


def test_reference_weights_match_policy_weights_at_step_zero(env):
    """A fresh LoRA adapter is the reference, so precomputed weights equal the ones the policy computes live."""
    ref = _make(env, mipo_loss="perce", mipo_perce_weights_from="reference", precompute_ref_log_probs=True,
                per_device_train_batch_size=1, precompute_ref_batch_size=1)
    pol = _make(env, mipo_loss="perce", per_device_train_batch_size=1)
    assert "perce_ref_chosen_pir" in ref.train_dataset.column_names
    assert "ref_chosen_token_logps" in ref.train_dataset.column_names
    for i in range(len(env["ds"])):
        rb = ref._prepare_inputs(ref.data_collator([ref.train_dataset[i]]))
        pb = pol._prepare_inputs(pol.data_collator([pol.train_dataset[i]]))
        assert "nc_input_ids" not in rb and "nc_input_ids" in pb  # reference weights cost no forward per step
        with torch.no_grad():
            out = pol.model(input_ids=pb["input_ids"], attention_mask=pb["attention_mask"])
        from trl.trainer.utils import selective_log_softmax

        mask = pb["completion_mask"][:, 1:].bool()
        logps = selective_log_softmax(out.logits[:, :-1], pb["input_ids"][:, 1:]).masked_fill(~mask, 0)
        w_ref, s_ref = ref._perce_token_weights(rb, logps, mask)
        w_pol, s_pol = pol._perce_token_weights(pb, logps, mask)
        torch.testing.assert_close(w_ref, w_pol, atol=1e-5, rtol=0)
        assert s_ref.mean_pir.item() == pytest.approx(s_pol.mean_pir.item(), abs=1e-5)


@pytest.mark.parametrize("truncation", [None, "keep_start", "keep_end"])
def test_perce_weights_line_up_with_the_response_tokens(env, truncation):
    """With prompt_no_context equal to the prompt every PIR is 0: any misalignment of the two forwards shows."""
    from datasets import Dataset

    rows = _rows()
    for r in rows:
        r["prompt_no_context"] = r["prompt"]
    opts = {"max_length": 30, "truncation_mode": truncation} if truncation else {}
    trainer = _make(env, dataset=Dataset.from_list(rows), mipo_loss="perce", **opts)
    batch = _first_batch(trainer)
    if truncation:
        assert batch["input_ids"].shape[1] == 30
    mask = batch["completion_mask"][:, 1:].bool()
    from trl.trainer.utils import selective_log_softmax

    with torch.no_grad():
        out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logps = selective_log_softmax(out.logits[:, :-1], batch["input_ids"][:, 1:]).masked_fill(~mask, 0)
    weights, stats = trainer._perce_token_weights(batch, logps, mask)
    assert stats.n_tokens.item() == mask.sum().item() > 0
    assert abs(stats.mean_pir.item()) < 1e-4 and stats.clipped_frac.item() == 1.0  # PIR 0 < clip_min 0.8
    torch.testing.assert_close(weights, torch.where(mask, 0.8, 0.0))


@pytest.mark.parametrize("max_length", [128, 40])
def test_rmipo_dpmi_matches_a_direct_computation(env, max_length):
    """dPMI from the trainer vs. forwards written out here: [prompt + y] and [y] alone, tokens 2..n of y.

    max_length 40 cuts the chosen response: only its kept part counts.
    """
    trainer = _make(env, mipo_loss="rmipo", per_device_train_batch_size=1, max_length=max_length)
    row = trainer.train_dataset[0]
    batch = trainer._prepare_inputs(trainer.data_collator([row]))
    mask = batch["completion_mask"][:, 1:].bool()
    model = trainer.model
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logps = torch.log_softmax(out.logits[:, :-1], -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
        logps = logps.masked_fill(~mask, 0)
        dpmi, pmi = trainer._rmipo_dpmi(batch, logps, mask)

        def pmi_of(response):
            response = response[: max_length - len(row["prompt_ids"])]
            full = torch.tensor([row["prompt_ids"] + response])
            with_prompt = torch.log_softmax(model(input_ids=full).logits[0, :-1], -1)
            with_prompt = with_prompt.gather(-1, full[0, 1:, None]).squeeze(-1)[-(len(response) - 1):]
            alone_ids = torch.tensor([response])
            alone = torch.log_softmax(model(input_ids=alone_ids).logits[0, :-1], -1)
            alone = alone.gather(-1, alone_ids[0, 1:, None]).squeeze(-1)
            return (with_prompt.mean() - alone.mean()).item()

        expected_c, expected_r = pmi_of(row["chosen_ids"]), pmi_of(row["rejected_ids"])
    assert pmi[0].item() == pytest.approx(expected_c, abs=1e-5)
    assert pmi[1].item() == pytest.approx(expected_r, abs=1e-5)
    assert dpmi.item() == pytest.approx(expected_c - expected_r, abs=1e-5)


@pytest.mark.parametrize("form", ["dpo", "reference_free"])
def test_reference_pmi_matches_policy_pmi_at_step_zero_and_costs_no_forward(env, form, monkeypatch):
    """A fresh LoRA adapter is the reference: the PMI precomputed once equals the one the policy computes live,
    and a step with rmipo_pmi_from reference runs no response-alone forward."""
    ref = _make(env, mipo_loss="rmipo", mipo_rmipo_form=form, mipo_rmipo_pmi_from="reference",
                precompute_ref_log_probs=True, per_device_train_batch_size=1, precompute_ref_batch_size=2,
                max_length=40)
    pol = _make(env, mipo_loss="rmipo", mipo_rmipo_form=form, per_device_train_batch_size=1, max_length=40)
    assert {"rmipo_ref_chosen_pmi", "rmipo_ref_rejected_pmi"} <= set(ref.train_dataset.column_names)
    assert ("ref_chosen_logps" in ref.train_dataset.column_names) == (form == "dpo")
    from trl.trainer.utils import selective_log_softmax

    seen = []
    for i in range(len(env["ds"])):
        rb = ref._prepare_inputs(ref.data_collator([ref.train_dataset[i]]))
        pb = pol._prepare_inputs(pol.data_collator([pol.train_dataset[i]]))
        mask = pb["completion_mask"][:, 1:].bool()
        with torch.no_grad():
            out = pol.model(input_ids=pb["input_ids"], attention_mask=pb["attention_mask"])
            logps = selective_log_softmax(out.logits[:, :-1], pb["input_ids"][:, 1:]).masked_fill(~mask, 0)
            live_dpmi, live_pmi = pol._rmipo_dpmi(pb, logps, mask)
            pre_dpmi, pre_pmi = ref._rmipo_dpmi(rb, logps, mask)
        torch.testing.assert_close(pre_pmi, live_pmi, atol=1e-5, rtol=0)
        torch.testing.assert_close(pre_dpmi, live_dpmi, atol=1e-5, rtol=0)
        seen.append(live_dpmi.abs().item())
    assert max(seen) > 1e-3  # the pairs' PMI gaps are not all zero, so the comparison means something

    def no_forward(*a, **k):
        raise AssertionError("rmipo_pmi_from reference ran a policy forward")

    monkeypatch.setattr(ref, "_policy_token_logps_no_grad", no_forward)
    ref.model.train()
    loss = ref.compute_loss(ref.model, ref._prepare_inputs(ref.data_collator([ref.train_dataset[0]])))
    assert torch.isfinite(loss)


def test_evaluate_logs_the_hook_metrics(env):
    trainer = _make(env, mipo_loss="rmipo+perce", mipo_perce_weights_from="reference", precompute_ref_log_probs=True)
    trainer.eval_dataset = trainer._precompute_ref_logps(
        trainer._prepare_dataset(env["ds"], env["tok"], trainer.args, "eval"), "eval", 2
    )
    metrics = trainer.evaluate()
    for key in ("eval_loss", "eval_rmipo/gamma", "eval_perce/weight_mean", "eval_perce/aux_loss"):
        assert key in metrics and math.isfinite(metrics[key]), (key, sorted(metrics))


def test_weights_from_reference_needs_precompute(env):
    with pytest.raises(MIPOConfigError, match="precompute_ref_log_probs"):
        _make(env, mipo_loss="perce", mipo_perce_weights_from="reference")


def test_pmi_from_reference_needs_precompute(env):
    with pytest.raises(MIPOConfigError, match="rmipo_pmi_from.*precompute_ref_log_probs"):
        _make(env, mipo_loss="rmipo", mipo_rmipo_pmi_from="reference")


def test_perce_needs_prompt_no_context(env):
    from datasets import Dataset

    with pytest.raises(MIPOConfigError, match="prompt_no_context"):
        _make(env, dataset=Dataset.from_list(_rows(with_nc=False)), mipo_loss="perce")


def test_incompatible_dpo_options_are_refused(env):
    with pytest.raises(MIPOConfigError, match="loss_type"):
        _make(env, mipo_loss="rmipo", loss_type=["ipo"])


def test_liger_without_the_plugin_gets_the_plugins_refusal(env):
    """A trainer built directly (no plugin, no config load) stops on the same decision, with the same message."""
    from axolotl_mipo import compat

    with pytest.raises(MIPOConfigError) as err:
        _make(env, mipo_loss="rmipo", use_liger_kernel=True)
    assert str(err.value) == compat.liger_refusal("rmipo")


def test_the_trainer_scores_through_trls_fused_head_where_trl_has_one(env, monkeypatch):
    """TRL >= 1.15 patches the policy with its fused LM head; every forward of the loss then goes through it (no
    logits are built). On older TRL every forward builds logits."""
    from axolotl_mipo import compat

    trainer = _make(env, mipo_loss="rmipo+perce", mipo_rmipo_form="dpo")
    assert trainer._mipo_fused == compat.trl_fused_lm_head()
    calls = []
    real = compat.score_tokens

    def spy(model, model_kwargs, score_mask, *, fused, stats=False):
        calls.append(fused)
        return real(model, model_kwargs, score_mask, fused=fused, stats=stats)

    monkeypatch.setattr(compat, "score_tokens", spy)
    _loss(trainer, _first_batch(trainer))
    # policy, no-context (PerCE weights), reference, response-alone (RMiPO PMI)
    assert calls == [compat.trl_fused_lm_head()] * 4
