"""POPIPlugin's config checks: rl: grpo, the reward function, no mipo: block."""

from pathlib import Path

import pytest
import yaml

from axolotl_mipo.errors import MIPOConfigError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "presets"
QUERY = [{"role": "user", "content": "What should I cook tonight?"}]
CHOSEN, REJECTED = "A quick vegan stir-fry with tofu.", "A steak, medium rare."


def _cfg(**over):
    cfg = yaml.safe_load((REPO / "example_configs" / "popi-summarizer-tiny-cpu.yml").read_text())
    cfg.update(over)
    return cfg


def test_grpo_config_without_the_reward_says_what_to_add():
    from axolotl_mipo.popi.plugin import POPIPlugin

    cfg = _cfg(trl={"use_vllm": False})
    with pytest.raises(MIPOConfigError, match=r"trl: \{reward_funcs: \[axolotl_mipo\.popi\.reward\.popi_reward\]\}"):
        POPIPlugin().register(cfg)


def test_plugin_fills_rl_and_refuses_other_rl_and_a_mipo_block():
    from axolotl_mipo.popi.plugin import POPIPlugin

    cfg = _cfg(rl=None)
    POPIPlugin().register(cfg)
    assert cfg["rl"] == "grpo" and cfg["datasets"][0]["path"].endswith("community_alignment.csv")
    with pytest.raises(MIPOConfigError, match="set 'rl: grpo'"):
        POPIPlugin().register(_cfg(rl="dpo"))
    with pytest.raises(MIPOConfigError, match="two runs"):
        POPIPlugin().register(_cfg(mipo={"datasets": [{"path": "x"}]}))
    with pytest.raises(MIPOConfigError, match=r"popi\.betta: unknown option; did you mean 'beta'"):
        POPIPlugin().register(_cfg(popi={**_cfg()["popi"], "betta": 1.0}))


def test_mipo_plugin_still_refuses_grpo():
    from axolotl_mipo.plugin import MIPOPlugin

    with pytest.raises(MIPOConfigError, match="set 'rl: dpo'"):
        MIPOPlugin().register({"rl": "grpo", "mipo": {"datasets": [{"path": "x.jsonl"}]}})


def test_reward_settings_follow_the_config():
    from axolotl_mipo.popi.args import POPIConfig
    from axolotl_mipo.popi.plugin import reward_settings

    popi = POPIConfig.model_validate({"datasets": [{"path": "x"}], "beta": 0.1, "context_placement": "user_prefix",
                                      "generator_adapter": "/a"})
    s = reward_settings({"base_model": "/m"}, popi, device="cuda:1")
    assert (s.generator, s.adapter, s.beta, s.device, s.fmt.placement) == ("/m", "/a", 0.1, "cuda:1", "user_prefix")


def test_gpu_example_config_validates_with_popis_grpo_settings(tmp_path, tiny_model_dir):
    """example_configs/popi-summarizer.yml passes Axolotl's validation (tiny model, fixture rows, CPU dtypes)."""
    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    cfg = yaml.safe_load((REPO / "example_configs" / "popi-summarizer.yml").read_text())
    cfg.update(base_model=str(tiny_model_dir), tokenizer_type="AutoTokenizer", output_dir=str(tmp_path / "out"),
               dataset_prepared_path=str(tmp_path / "prepared"), bf16=False, optimizer="adamw_torch",
               gradient_checkpointing=False)
    cfg["popi"].update(datasets=[{"path": str(FIXTURES / "alignx.jsonl"), "format": "alignx"}],
                       generator_dtype="float32")
    path = tmp_path / "popi.yml"
    path.write_text(yaml.safe_dump(cfg))
    PluginManager.get_instance().plugins.clear()
    out = load_cfg(str(path))
    assert out.rl == "grpo"
    # POPI's published GRPO settings survive Axolotl's schema
    assert (out.trl.temperature, out.trl.top_p, out.trl.beta) == (0.6, 1.0, 0.002)
    assert out.trl.scale_rewards in (False, "none")
    assert out.popi["beta"] == 0.01
