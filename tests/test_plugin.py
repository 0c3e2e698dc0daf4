"""The plugin's config: Axolotl validation through the real load_cfg, typos and bad combinations."""

import copy
import re

import pytest
import yaml

BASE = {
    "base_model": "PLACEHOLDER",
    "plugins": ["axolotl_mipo.MIPOPlugin"],
    "rl": "dpo",
    "mipo": {"datasets": [{"path": "example_configs/data/personas.jsonl"}]},
    "adapter": "lora",
    "lora_r": 4,
    "lora_alpha": 8,
    "lora_target_linear": True,
    "sequence_len": 128,
    "micro_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "num_epochs": 1,
    "learning_rate": 1e-4,
    "output_dir": "PLACEHOLDER",
}


@pytest.fixture()
def load(tmp_path, tiny_model_dir):
    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    def _load(overrides=None, drop=()):
        cfg = copy.deepcopy(BASE)
        cfg["base_model"] = str(tiny_model_dir)
        cfg["output_dir"] = str(tmp_path / "out")
        for k in drop:
            cfg.pop(k)
        for k, v in (overrides or {}).items():
            if k == "mipo":
                cfg["mipo"].update(v)
            else:
                cfg[k] = v
        path = tmp_path / "cfg.yml"
        path.write_text(yaml.safe_dump(cfg))
        PluginManager.get_instance().plugins.clear()
        return load_cfg(str(path))

    return _load


def test_valid_config_keeps_every_mipo_option(load):
    cfg = load({"mipo": {"strategy": "swap_context", "generation": {"max_new_tokens": 7}, "loss": "rmipo"}})
    assert cfg.mipo["strategy"] == "swap_context"
    assert cfg.mipo["generation"]["max_new_tokens"] == 7
    assert cfg.mipo["generation"]["temperature"] == 0.1  # paper default
    assert cfg.mipo["loss"] == "rmipo"
    assert cfg.trainer_cls == "axolotl_mipo.trainer.MIPODPOTrainer"
    assert cfg.datasets[0]["path"] == "example_configs/data/personas.jsonl"


def test_rl_defaults_to_dpo(load):
    cfg = load(drop=("rl",))
    assert str(getattr(cfg.rl, "value", cfg.rl)) == "dpo"


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"mipo": {"stratgy": "drop_context"}}, "stratgy"),
        ({"mipo": {"generation": {"temprature": 0.5}}}, "temprature"),
        ({"mipo": {"datasets": [{"path": "x.jsonl", "contxt_field": "c"}]}}, "contxt_field"),
        ({"mipo": {"generation": {"top_p": 1.5}}}, "top_p"),
        ({"mipo": {"loss": "simpo"}}, "loss"),
    ],
)
def test_typos_and_bad_values_fail_naming_the_key(load, overrides, key):
    with pytest.raises(Exception) as err:
        load(overrides)
    assert key in str(err.value)


def test_flat_mipo_keys_are_refused(load):
    from axolotl_mipo.errors import MIPOConfigError

    with pytest.raises(MIPOConfigError, match="mipo_strategy"):
        load({"mipo_strategy": "drop_context"})


def test_other_rl_is_refused(load):
    from axolotl_mipo.errors import MIPOConfigError

    with pytest.raises(MIPOConfigError, match="rl: dpo"):
        load({"rl": "kto"})


def test_missing_block_is_refused(load):
    from axolotl_mipo.errors import MIPOConfigError

    with pytest.raises(MIPOConfigError, match="'mipo:' block"):
        load(drop=("mipo",))


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"mipo": {"strategy": "mismatched_prompt"}}, "needs format: prompt or a preset without a user context "
                                                       r"\(arc, gsm8k, mmlu, svamp\)"),
        ({"mipo": {"datasets": [{"path": "x", "format": "prompt"}]}}, "needs a user context"),
        ({"mipo": {"rmipo_gamma_min": 2.0}}, "rmipo_gamma_min"),
        ({"mipo": {"perce_clip_min": 9.0}}, "perce_clip_min"),
        ({"mipo": {"context_template": "no placeholder"}}, "context_template"),
    ],
)
def test_impossible_combinations(load, overrides, needle):
    with pytest.raises(Exception, match=needle):
        load(overrides)


def test_typo_message_suggests_the_right_key(load):
    from axolotl_mipo.errors import MIPOConfigError

    with pytest.raises(MIPOConfigError, match=r"mipo.stratgy: unknown option; did you mean 'strategy'\?"):
        load({"mipo": {"stratgy": "drop_context"}})


@pytest.mark.parametrize("name", ["mipo-tiny-cpu.yml", "mipo-llama.yml", "mipo-qwen.yml"])
def test_example_configs_validate(name, tmp_path, tiny_model_dir):
    """The shipped YAMLs pass Axolotl's validation (the hub model swapped for the local tiny one)."""
    from pathlib import Path

    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "example_configs" / name).read_text())
    cfg["base_model"] = str(tiny_model_dir)
    cfg["output_dir"] = str(tmp_path / "out")
    if cfg.get("load_in_4bit"):  # bitsandbytes 4-bit needs a GPU; validate the rest here
        cfg.pop("load_in_4bit")
        cfg["adapter"] = "lora"
        cfg["optimizer"] = "adamw_torch"
        cfg.pop("tf32", None)
        cfg["bf16"] = False
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    PluginManager.get_instance().plugins.clear()
    out = load_cfg(str(path))
    assert out.mipo["generation"]["temperature"] == 0.1


@pytest.mark.parametrize("top_level_seed, expected", [(7, 7), (None, 123)])
def test_pre_model_load_seeds_torch_so_adapter_init_repeats(top_level_seed, expected):
    """Axolotl inits the LoRA adapter before the Trainer seeds torch: the plugin seeds first."""
    import torch
    from axolotl.utils.dict import DictDefault

    from axolotl_mipo.plugin import MIPOPlugin

    cfg = DictDefault({"seed": top_level_seed, "mipo": {"datasets": [{"path": "x.jsonl"}], "seed": 123}})
    plugin = MIPOPlugin()
    draws = []
    for _ in range(2):
        torch.rand(5)  # whatever ran before
        plugin.pre_model_load(cfg)
        draws.append(torch.nn.Linear(8, 4).weight.detach().clone())  # how a LoRA A matrix is initialised
    assert torch.equal(draws[0], draws[1])
    torch.manual_seed(expected)
    assert torch.equal(torch.nn.Linear(8, 4).weight, draws[0])


# --------------------------------------------------------------------------- versions (axolotl_mipo.compat)
@pytest.mark.parametrize("loss", ["rmipo", "perce", "rmipo+perce"])
def test_liger_kernel_is_refused_up_front_for_losses_it_cannot_train(load, loss):
    from axolotl_mipo import compat
    from axolotl_mipo.errors import MIPOConfigError

    with pytest.raises(MIPOConfigError, match=r"dpo_use_liger_kernel: true.*mipo\.loss " + re.escape(loss)) as err:
        load({"dpo_use_liger_kernel": True, "mipo": {"loss": loss}})
    assert str(err.value) == compat.liger_refusal(loss)  # the one decision, word for word


def test_liger_kernel_with_loss_dpo_is_trls_own_path(load):
    cfg = load({"dpo_use_liger_kernel": True})
    assert cfg.dpo_use_liger_kernel is True and cfg.trainer_cls == "axolotl_mipo.trainer.MIPODPOTrainer"


def test_register_guards_axolotls_peer_check(load):
    from axolotl.utils import environment

    load()
    assert getattr(environment.check_cuda_p2p_support, "_mipo_guarded", False)


PLAIN_DPO = {k: v for k, v in BASE.items() if k not in ("plugins", "mipo")}


def test_every_hook_does_nothing_for_a_config_without_a_mipo_block():
    """What an entry-point-loaded plugin (Axolotl >= 0.21 loads it for every run) must do for other configs."""
    from axolotl.utils.dict import DictDefault

    from axolotl_mipo.plugin import MIPOPlugin

    raw = {**copy.deepcopy(PLAIN_DPO), "mipo_strategy": "x", "sample_packing": True}
    cfg = DictDefault(copy.deepcopy(raw))
    plugin = MIPOPlugin()
    assert not plugin._is_duplicate()  # what follows is about the missing block, not a second instance
    state = torch_rng_state()
    plugin.register(cfg)
    assert cfg == DictDefault(raw)  # no rl, datasets or trainer_cls filled in, nothing refused
    assert plugin.get_training_args(cfg) is None
    plugin.pre_model_load(cfg)
    assert torch_rng_state().equal(state)  # not seeded
    assert plugin.load_datasets(cfg) is None


def torch_rng_state():
    import torch

    return torch.random.get_rng_state()


@pytest.fixture()
def entry_point(monkeypatch):
    """Axolotl >= 0.21 with axolotl-mipo registered under ``axolotl.plugins`` (what the installed wheel declares)."""
    from importlib.metadata import EntryPoint

    import axolotl.integrations.base as base

    if not hasattr(base, "PLUGIN_ENTRY_POINT_GROUP"):
        pytest.skip("this Axolotl has no plugin entry-point group (added in 0.21)")
    real = base.entry_points

    def entry_points(group=None, **kw):
        points = list(real(group=group, **kw)) if group else []
        if group == base.PLUGIN_ENTRY_POINT_GROUP:
            points = [p for p in points if not p.value.startswith("axolotl_mipo")]
            points.append(EntryPoint(name="mipo", value="axolotl_mipo:MIPOPlugin", group=group))
        return points

    monkeypatch.setattr(base, "entry_points", entry_points)
    base.reset_plugin_entry_points_cache()
    yield base
    base.reset_plugin_entry_points_cache()


def _mipo_plugins():
    from axolotl.integrations.base import PluginManager

    from axolotl_mipo.plugin import MIPOPlugin

    return [p for p in PluginManager.get_instance().plugins.values() if isinstance(p, MIPOPlugin)]


def test_entry_point_a_mipo_block_alone_enables_the_plugin(entry_point, load):
    cfg = load(drop=("plugins",))
    assert cfg.trainer_cls == "axolotl_mipo.trainer.MIPODPOTrainer" and cfg.mipo["strategy"] == "drop_context"
    assert len(_mipo_plugins()) == 1


def test_entry_point_leaves_a_config_without_mipo_alone(entry_point, load):
    cfg = load(drop=("plugins", "mipo"), overrides={"datasets": [{"path": "example_configs/data/personas.jsonl",
                                                                   "type": "chatml.intel"}]})
    assert cfg.trainer_cls is None and cfg.mipo is None


@pytest.mark.parametrize("listed", ["axolotl_mipo.MIPOPlugin", "axolotl_mipo.plugin.MIPOPlugin"])
def test_entry_point_and_plugins_list_run_the_plugin_once(entry_point, load, listed):
    cfg = load({"plugins": [listed]})
    plugins = _mipo_plugins()
    assert cfg.trainer_cls == "axolotl_mipo.trainer.MIPODPOTrainer"
    # one instance under the same name; under another spelling the later one stands aside
    assert [p.get_training_args(cfg) is not None for p in plugins] == [True] + [False] * (len(plugins) - 1)
    assert len(plugins) == (1 if listed == "axolotl_mipo.MIPOPlugin" else 2)


@pytest.mark.parametrize("name, fixture, temperature", [
    ("mipo-reasoning-gsm8k.yml", "gsm8k_main.jsonl", 0.1),  # gsm.py lines 76-82
    ("mipo-reasoning-arc.yml", "arc.jsonl", 1.0),  # arc.py lines 33-39
])
def test_reasoning_example_configs_validate_and_load_their_rows(name, fixture, temperature, tmp_path,
                                                                tiny_model_dir, monkeypatch):
    """The reasoning example configs (issue 23 item 5) pass Axolotl's own schema, as the others above (4-bit
    swapped for its CPU equivalents), and their dataset entries, pointed at rows of the published shape, load."""
    from pathlib import Path

    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    from axolotl_mipo.args import as_config
    from axolotl_mipo.data.example import GOLD_KEYS
    from axolotl_mipo.data.rows import load_examples

    repo = Path(__file__).resolve().parents[1]

    shipped = yaml.safe_load((repo / "example_configs" / name).read_text())
    cfg = dict(shipped, base_model=str(tiny_model_dir), output_dir=str(tmp_path / "out"),
               dataset_prepared_path=str(tmp_path / "prepared"), adapter="lora", optimizer="adamw_torch",
               bf16=False)
    cfg.pop("load_in_4bit")  # bitsandbytes 4-bit needs a GPU; validate the rest here
    cfg.pop("tf32", None)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    PluginManager.get_instance().plugins.clear()
    out = load_cfg(str(path))
    mipo = as_config(out.mipo)
    assert out.rl == "dpo" and out.num_epochs == 1 and out.rl_beta == 0.1
    assert (mipo.generation.temperature, mipo.generation.top_p) == (temperature, 0.9)
    assert mipo.strategy == "mismatched_prompt" and not mipo.datasets[0].has_context
    # the shipped dataset entry, its path pointed at rows of the published shape (few_shot_path as shipped,
    # relative to the repository root as the config's comments run it)
    monkeypatch.chdir(repo)
    ds = mipo.datasets[0].model_copy(update={"path": str(repo / "tests" / "fixtures" / "presets" / fixture)})
    exs = load_examples([ds])
    assert exs and all(set(GOLD_KEYS) <= set(ex.meta) for ex in exs)
    if shipped["mipo"]["datasets"][0].get("few_shot_path"):
        assert exs[0].messages[0][1].count("Example ") == 8  # the authors' eight exemplars
