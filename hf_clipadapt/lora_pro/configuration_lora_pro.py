"""LoraProConfig: a peft.LoraConfig that also carries LoRA-Pro's optimizer settings.

LoRA-Pro changes only how the adapter is optimised, never what it is, so the
adapter stays a plain LoRA adapter: `peft_type` is LORA and the optimizer-only
fields are left out of the saved adapter_config.json. A checkpoint therefore
loads with stock `PeftModel.from_pretrained`, without hf_clipadapt installed
(the optimizer settings are not restored from it; pass them again to resume).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig

__all__ = ["LoraProConfig", "LORAPRO_FIELDS"]

# Fields that exist only on LoraProConfig and never reach the saved adapter.
LORAPRO_FIELDS = ("lorapro_mode", "lorapro_damping", "lorapro_b_damping")


@dataclass
class LoraProConfig(LoraConfig):
    """LoraConfig plus the defaults that `create_lorapro_optimizer(peft_model, lr=...)`
    and `LoraProTrainer` pick up when they are not given explicitly.

    Args:
        lorapro_mode: "full" (the paper's Algorithm 2: Adam on the equivalent
            full-weight gradient, two m×n moments per adapted matrix) or
            "efficient" (closed form on the raw gradients, then AdamW on A and B;
            plain LoRA's memory).
        lorapro_damping: δ added to BᵀB and AAᵀ before inverting them.
        lorapro_b_damping: scale-aware damping of BᵀB, in units of tr(AAᵀ)/r (None:
            the optimizer's default, 1.0 in efficient mode and 0.0 in full mode).
    """

    lorapro_mode: str = field(default="full", metadata={"help": 'LoRA-Pro optimizer mode: "full" or "efficient".'})
    lorapro_damping: float = field(default=1e-8, metadata={"help": "Damping δ·I on the r×r Gram matrices."})
    lorapro_b_damping: float | None = field(
        default=None, metadata={"help": "Damping of BᵀB in units of tr(AAᵀ)/r (None: 1 efficient, 0 full)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.lorapro_mode not in ("full", "efficient"):
            raise ValueError(f'lorapro_mode must be "full" or "efficient", got {self.lorapro_mode!r}.')
        if not (isinstance(self.lorapro_damping, (int, float)) and self.lorapro_damping >= 0):
            raise ValueError(f"lorapro_damping must be a number ≥ 0, got {self.lorapro_damping!r}.")
        bd = self.lorapro_b_damping
        if bd is not None and not (isinstance(bd, (int, float)) and bd >= 0):
            raise ValueError(f"lorapro_b_damping must be None or a number ≥ 0, got {bd!r}.")

    def to_dict(self) -> dict:
        # What PEFT writes to adapter_config.json: a plain LoRA config, so that
        # stock PEFT (which rejects unknown keys for a LORA peft_type) loads it.
        out = super().to_dict()
        for key in LORAPRO_FIELDS:
            out.pop(key, None)
        return out

    def optimizer_kwargs(self) -> dict:
        """The LoraProAdamW keyword arguments this config sets."""
        out = {"mode": self.lorapro_mode, "damping": self.lorapro_damping}
        if self.lorapro_b_damping is not None:
            out["b_damping"] = self.lorapro_b_damping
        return out
