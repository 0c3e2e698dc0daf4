"""The loss options, declared once: the training-arguments mixin, its checks, and the trainer's view of it.

Axolotl imports :class:`MIPOTrainingArgsMixin` while its own training-args module is still loading, so this
module imports nothing heavy (no torch, TRL or Axolotl trainers). The ``mipo:`` block's loss fields
(:mod:`axolotl_mipo.args`) are built from the same declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from pydantic import BaseModel

from axolotl_mipo.errors import MIPOConfigError

__all__ = ["LOSS_OPTIONS", "MIPOLossSettings", "MIPOTrainingArgsMixin", "training_args_from_config",
           "validate_options", "with_defaults"]


@dataclass
class MIPOTrainingArgsMixin:
    """The loss options, declared once, as training-argument fields (Axolotl merges this into ``AxolotlDPOConfig``).

    As TRL's ``DPOConfig`` declares a field, each option is one dataclass field
    with its default and, in its metadata, its ``help``, its allowed values
    (``choices``), its bounds (``gt``/``ge``) and the option it may not exceed
    (``at_most``: the one cross-field rule of these options). Everything else derives from
    these fields: the ``mipo:`` block's pydantic fields (the same names without
    the ``mipo_`` prefix), :func:`training_args_from_config`,
    :class:`MIPOLossSettings` and the checks of both; ``tests/test_loss_options.py``
    checks that they agree, and docs/reference/config.md is generated from them.
    """

    mipo_loss: str = field(default="dpo", metadata={
        "help": "the loss: DPO, RMiPO's MI-modulated margin, PerCE token weights, or both",
        "choices": ("dpo", "rmipo", "perce", "rmipo+perce")})
    mipo_rmipo_form: str = field(default="reference_free", metadata={
        "help": "reference_free (SimPO-style, as liavonpenn/rmipo) or dpo (keeps the reference log-ratios)",
        "choices": ("reference_free", "dpo")})
    mipo_rmipo_beta: float = field(default=2.0, metadata={
        "help": "beta of the reference-free RMiPO form", "gt": 0.0})
    mipo_rmipo_gamma_min: float = field(default=0.3, metadata={
        "help": "RMiPO margin for a large PMI gap", "at_most": "mipo_rmipo_gamma_max"})
    mipo_rmipo_gamma_max: float = field(default=1.6, metadata={"help": "RMiPO margin for a zero/negative PMI gap"})
    mipo_rmipo_pmi_from: str = field(default="policy", metadata={
        "help": "the model that scores each pair's PMI: the policy every step (as liavonpenn/rmipo), or the frozen "
                "reference once, with precompute_ref_log_probs",
        "choices": ("policy", "reference")})
    mipo_perce_alpha: float = field(default=1.0, metadata={
        "help": "weight of the auxiliary PerCE term on chosen", "ge": 0.0})
    mipo_perce_clip_min: float = field(default=0.8, metadata={
        "help": "PerCE weight lower clip m", "at_most": "mipo_perce_clip_max"})
    mipo_perce_clip_max: float = field(default=5.0, metadata={"help": "PerCE weight upper clip M"})
    mipo_perce_token_weighted_dpo: bool = field(default=True, metadata={
        "help": "weight the DPO sequence log-probs of policy and reference by PerCE weights"})
    mipo_perce_weights_from: str = field(default="policy", metadata={
        "help": "policy (recomputed every step) or reference (computed once with precompute_ref_log_probs)",
        "choices": ("policy", "reference")})


_PREFIX = "mipo_"
LOSS_OPTIONS = {f.name[len(_PREFIX):]: f for f in fields(MIPOTrainingArgsMixin)}
"""The loss options by their ``mipo:`` name (``loss``, ``rmipo_beta``...), each its mixin field."""


def validate_options(opts: dict) -> None:
    """Raise ``MIPOConfigError`` naming the ``mipo.*`` key of the first bad value (``opts``: mixin field names)."""

    def bad(name: str, why: str):
        raise MIPOConfigError(f"mipo.{name[len(_PREFIX):]}: {why}")

    for f in fields(MIPOTrainingArgsMixin):
        value, meta = opts[f.name], f.metadata
        if "choices" in meta and value not in meta["choices"]:
            bad(f.name, f"{value!r} is not one of {list(meta['choices'])}")
        if "gt" in meta and not value > meta["gt"]:
            bad(f.name, f"must be > {meta['gt']:g}")
        if "ge" in meta and not value >= meta["ge"]:
            bad(f.name, f"must be >= {meta['ge']:g}")
        if "at_most" in meta and value > opts[meta["at_most"]]:
            other = meta["at_most"]
            bad(f.name, f"{value:g} must be <= mipo.{other[len(_PREFIX):]} ({opts[other]:g})")


def with_defaults(get) -> dict:
    """Every mixin field: ``get(name)``, or the field's default where that is ``None``; floats and bools cast."""
    out = {}
    for f in fields(MIPOTrainingArgsMixin):
        value = get(f.name)
        value = f.default if value is None else value
        out[f.name] = float(value) if f.type in (float, "float") else bool(value) if f.type in (bool, "bool") else value
    return out


def training_args_from_config(mipo_cfg: Any) -> dict:
    """The ``mipo_*`` training-argument fields for a ``mipo:`` block.

    Accepts the validated ``MIPOConfig``, or a plain dict / ``DictDefault`` of the
    block (missing or ``None`` keys take the defaults; keys that are not loss
    options, such as ``datasets``, are ignored). Returns every field of
    :class:`MIPOTrainingArgsMixin`.
    """
    if mipo_cfg is None:
        data: dict = {}
    elif isinstance(mipo_cfg, BaseModel):
        data = mipo_cfg.model_dump()
    else:
        data = dict(mipo_cfg)
    out = with_defaults(lambda name: data.get(name[len(_PREFIX):]))
    validate_options(out)
    return out


class _LossSettings:
    """The derived switches of :class:`MIPOLossSettings` (whose fields are the mixin's, built below)."""

    @classmethod
    def from_args(cls, args: Any) -> MIPOLossSettings:
        """From training arguments (``None``, or args without ``mipo_*`` fields: the defaults, i.e. plain DPO)."""
        opts = with_defaults(lambda name: getattr(args, name, None))
        validate_options(opts)
        return cls(**{name[len(_PREFIX):]: value for name, value in opts.items()})

    @property
    def uses_rmipo(self) -> bool:
        return "rmipo" in self.loss

    @property
    def uses_perce(self) -> bool:
        return "perce" in self.loss

    @property
    def needs_reference(self) -> bool:
        """Whether the preference term has reference log-ratios (DPO and RMiPO's DPO form)."""
        return self.loss in ("dpo", "perce") or (self.uses_rmipo and self.rmipo_form == "dpo")

    @property
    def token_weighted(self) -> bool:
        return self.uses_perce and self.perce_token_weighted_dpo

    @property
    def needs_ref_tokens(self) -> bool:
        """Precomputed reference data must keep per-token log-probs (weights change the sums)."""
        return self.needs_reference and self.token_weighted

    @property
    def ref_pmi(self) -> bool:
        return self.uses_rmipo and self.rmipo_pmi_from == "reference"

    @property
    def ref_weights(self) -> bool:
        return self.uses_perce and self.perce_weights_from == "reference"

    @property
    def ref_extras(self) -> bool:
        """Precomputing reference data also computes PerCE weights or RMiPO PMIs (beyond TRL's sums)."""
        return self.ref_weights or self.ref_pmi

    @property
    def policy_weights(self) -> bool:
        return self.uses_perce and self.perce_weights_from == "policy"


MIPOLossSettings = make_dataclass(
    "MIPOLossSettings", [(name, f.type) for name, f in LOSS_OPTIONS.items()], bases=(_LossSettings,), frozen=True,
)
MIPOLossSettings.__module__ = __name__  # make_dataclass's module= needs Python 3.12
MIPOLossSettings.__doc__ = """The loss options as the trainer uses them: the mixin's fields without the prefix,
in its order (built from :data:`LOSS_OPTIONS`, not listed again), with derived switches.

Built only by :meth:`from_args`, which fills every field from the training arguments or the declaration's
defaults.
"""
