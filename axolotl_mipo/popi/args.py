"""The ``popi:`` block: training a preference summarizer with Axolotl's GRPO (``axolotl_mipo.POPIPlugin``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from axolotl_mipo.args import MIPODatasetConfig, PromptFormatOptions, validate_block

REWARD_FUNC = "axolotl_mipo.popi.reward.popi_reward"


class POPIConfig(PromptFormatOptions):
    """Every option of the summarizer's training. See docs/popi.md.

    ``context_placement``, ``context_template`` and ``user_prefix_template``: how the generator sees the
    summary, the same keys as in the ``mipo:`` block (:class:`~axolotl_mipo.args.PromptFormatOptions`).
    """

    block = "popi"

    datasets: list[MIPODatasetConfig] = Field(
        min_length=1, description="inputs with a user history and the user's own pair per row (alignx, prism, "
        "community_alignment)",
    )
    on_bad_row: Literal["raise", "skip"] = Field(
        default="raise", description="a row without history or pair: raise (naming it) or skip (counted)"
    )
    dedupe_rows: bool = True
    seed: int = 42
    template: str | None = Field(
        default=None, description="the summary prompt, with {history} and optionally {max_words}; default: "
        "preference_summary's (axolotl_mipo.pipeline.summary.DEFAULT_TEMPLATE). Use the same as mipo.summary.template",
    )
    max_words: int = Field(default=60, ge=1, description="the length the prompt asks for ({max_words})")
    max_prompt_tokens: int | None = Field(
        default=None, ge=1, description="histories are cut (most recent part kept) so the prompt fits this "
        "(default: sequence_len minus trl.max_completion_length)",
    )
    beta: float = Field(default=0.01, gt=0.0, description="beta of the reward's -log sigmoid(beta * delta) / beta "
                        "(0.01: loss.beta in github.com/YizhuoChen99/POPI run.sh)")
    length_penalty: float = Field(default=0.0, ge=0.0, description="reward minus this per summary token")
    generator: str | None = Field(default=None, description="the frozen generator/reference (default: base_model)")
    generator_adapter: str | None = Field(default=None, description="a PEFT adapter merged into the generator")
    generator_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto: bfloat16 on a GPU that supports it, else float32"
    )
    batch_size: int = Field(default=8, ge=1, description="sequences per forward pass of the generator")

    @field_validator("template")
    @classmethod
    def _has_history(cls, v: str | None) -> str | None:
        if v is not None and "{history}" not in v:
            raise ValueError("popi.template must contain '{history}'")
        return v


class POPIArgs(BaseModel):
    """Merged into Axolotl's config schema (see ``POPIPlugin.get_input_args``)."""

    popi: POPIConfig | None = None


def validate_popi_block(raw) -> POPIConfig:
    """The ``popi:`` block, with pydantic's errors turned into one line per bad key (as the ``mipo:`` block's)."""
    return validate_block(POPIConfig, raw)
