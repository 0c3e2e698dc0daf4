"""The mipo: block (axolotl_mipo/args.py): each rule written once, from what rows, presets and strategies declare."""

import pytest

from axolotl_mipo.errors import MIPOConfigError


def _third_party(prompt_only: bool):
    from axolotl_mipo.pairing import PairingStrategy

    class ThirdParty(PairingStrategy):
        needs_context = not prompt_only

        def requests(self, examples, seed):
            return []

        def pair(self, examples, responses, seed):
            return []

    ThirdParty.prompt_only = prompt_only
    return ThirdParty


class _EntryPoint:
    group = "axolotl_mipo.pairing"

    def __init__(self, name, obj):
        self.name, self.value, self._obj = name, f"their_pkg:{name}", obj

    def load(self):
        return self._obj


@pytest.mark.parametrize("how", ["entry point", "module:object"])
def test_a_third_party_strategy_gets_the_same_format_check_as_the_built_ins(how, monkeypatch):
    """The check reads what a strategy declares (needs_context, prompt_only), not its name."""
    import sys
    import types

    from axolotl_mipo.args import validate_mipo_block
    from axolotl_mipo.pairing import registry

    module = types.ModuleType("their_pkg_for_args_test")
    module.NeedsContext, module.PromptsOnly = _third_party(False), _third_party(True)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    if how == "entry point":
        monkeypatch.setattr(registry, "_entry_points", lambda: [_EntryPoint("ctx_strategy", module.NeedsContext),
                                                               _EntryPoint("plain_strategy", module.PromptsOnly)])
        ctx, plain = "ctx_strategy", "plain_strategy"
    else:
        ctx, plain = f"{module.__name__}:NeedsContext", f"{module.__name__}:PromptsOnly"
    prompts, contexts = [{"path": "p.jsonl", "format": "prompt"}], [{"path": "c.jsonl"}]
    with pytest.raises(MIPOConfigError, match=rf"mipo.strategy {ctx} needs a user context, but "
                                              r"mipo.datasets\[0\].format is 'prompt'"):
        validate_mipo_block({"datasets": prompts, "strategy": ctx})
    with pytest.raises(MIPOConfigError, match=rf"mipo.strategy {plain} is the reasoning variant.*needs format: "
                                              r"prompt or a preset without a user context \(arc, gsm8k, mmlu, svamp\); "
                                              r"mipo.datasets\[1\].format is 'context_query'"):
        validate_mipo_block({"datasets": prompts + contexts, "strategy": [{"name": plain},
                                                                          {"name": "drop_context"}]})
    assert validate_mipo_block({"datasets": contexts, "strategy": ctx}).strategy == ctx
    assert validate_mipo_block({"datasets": prompts, "strategy": plain}).strategy == plain


def test_a_mixture_by_name_is_checked_by_its_components_and_an_unknown_name_is_left_to_the_builder():
    from axolotl_mipo.args import validate_mipo_block

    prompts = [{"path": "p.jsonl", "format": "prompt"}]
    with pytest.raises(MIPOConfigError, match="mipo.strategy drop_context needs a user context"):
        validate_mipo_block({"datasets": prompts, "strategy": "mixture",
                             "strategy_kwargs": {"components": [{"name": "drop_context"}]}})
    validate_mipo_block({"datasets": prompts, "strategy": "mixture",
                         "strategy_kwargs": {"components": [{"name": "mismatched_prompt"}]}})
    # as before: the config names no unknown strategy; building it does (with the list of known ones)
    assert validate_mipo_block({"datasets": prompts, "strategy": "not_installed_yet"}).strategy == "not_installed_yet"


@pytest.mark.parametrize("ds, message", [
    ({"format": "prism", "max_items": 3}, r"max_items: is an option of alignx, community_alignment and lamp, "
                                          r"not of prism"),
    ({"format": "lamp", "context_parts": ["x"]}, r"context_parts: is an option of alignx and prism, not of lamp"),
    ({"format": "alignx", "context_parts": []}, r"context_parts: is empty"),
    ({"format": "alignx", "context_parts": ["karma"]}, r"context_parts: 'karma' is not an alignx part"),
    ({"format": "community_alignment", "rejected_response": "worst"}, r"rejected_response: community_alignment "
                                                                      r"has no per-response scores"),
    ({"format": "messages", "survey_config": "s2"}, r"survey_config: is an option of the dataset presets"),
    ({"format": "prism", "chosen_field": "c", "rejected_field": "r"}, r"chosen_field: is an option of the generic"),
])
def test_preset_options_come_from_each_presets_declaration(ds, message):
    from axolotl_mipo.args import validate_mipo_block

    with pytest.raises(MIPOConfigError, match=r"mipo.datasets\[\]\." + message):
        validate_mipo_block({"datasets": [{"path": "x", **ds}]})


def test_every_preset_option_is_a_dataset_key_and_its_default_is_what_the_preset_reads():
    from axolotl_mipo.args import MIPODatasetConfig
    from axolotl_mipo.data.presets import PRESETS

    for preset in PRESETS.values():
        for key, option in preset.options.items():
            assert key in MIPODatasetConfig.model_fields, (preset.name, key)
            if option.default is not None:  # a dataset key the user can leave unset for the preset's default
                assert MIPODatasetConfig.model_fields[key].default is None, (preset.name, key)
    assert PRESETS["alignx"].options["max_items"].default == 4
    assert PRESETS["prism"].options["rejected_response"].default == "worst"


def test_popi_shares_the_prompt_format_options_and_the_error_formatter():
    from axolotl_mipo.args import PromptFormatOptions, validate_mipo_block
    from axolotl_mipo.popi.args import POPIConfig, validate_popi_block

    ds = [{"path": "x", "format": "alignx"}]
    assert issubclass(POPIConfig, PromptFormatOptions)
    with pytest.raises(MIPOConfigError, match=r"invalid 'popi:' block:\n  popi.context_template: .*"
                                              r"popi.context_template must contain '\{context\}'"):
        validate_popi_block({"datasets": ds, "context_template": "none"})
    with pytest.raises(MIPOConfigError, match=r"mipo.user_prefix_template must contain both"):
        validate_mipo_block({"datasets": ds, "user_prefix_template": "{context}"})
    with pytest.raises(MIPOConfigError, match=r"popi.contxt_template: unknown option; did you mean "
                                              r"'context_template'"):
        validate_popi_block({"datasets": ds, "contxt_template": "{context}"})
