"""LoRA-Pro for `transformers.Trainer` users, two ways. A complete example:

    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
    from hf_clipadapt import LoraProConfig, LoraProOptimizerFactory, LoraProTrainer

    model = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M")
    model = get_peft_model(model, LoraProConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                lorapro_mode="full"))
    args = TrainingArguments("out", learning_rate=2e-5, lr_scheduler_type="cosine", warmup_steps=0.03,
                             bf16=True, max_grad_norm=1.0, gradient_accumulation_steps=4)

    # 1. One line, any Trainer, through Trainer's optimizer-factory hook. Trainer
    #    calls LoraProOptimizerFactory()(model, **kwargs); the learning rate must be
    #    in kwargs (factories do not see TrainingArguments), the schedule still
    #    comes from TrainingArguments.
    trainer = Trainer(model=model, args=args, train_dataset=train_ds,
                      optimizer_cls_and_kwargs=(LoraProOptimizerFactory, {"lr": 2e-5}))

    # 2. Or the subclass, which reads lr, betas, eps and weight_decay from args and
    #    mode/damping from the LoraProConfig (or lorapro_mode=... here).
    trainer = LoraProTrainer(model=model, args=args, train_dataset=train_ds)
    trainer.train()

The saved adapter is plain LoRA: `PeftModel.from_pretrained` loads it anywhere.
Checkpoints (`save_steps`) carry the optimizer moments, keyed by parameter name,
so `trainer.train(resume_from_checkpoint=...)` continues the exact run.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from .factory import config_kwargs, create_lorapro_optimizer
from .optimizer import LoraProAdamW
from .pairs import check_not_deepspeed

__all__ = ["LoraProOptimizerFactory", "LoraProTrainer"]


class LoraProOptimizerFactory:
    """Optimizer factory for `Trainer(optimizer_cls_and_kwargs=(LoraProOptimizerFactory, kwargs))`.

    kwargs are those of `create_lorapro_optimizer`: lr (required), mode, damping,
    betas, eps, weight_decay, moment_dtype, optimizer_cls."""

    def __call__(self, model: torch.nn.Module, **kwargs: Any) -> torch.optim.Optimizer:
        if "lr" not in kwargs:
            raise TypeError(
                "LoraProOptimizerFactory needs the learning rate in its kwargs, e.g. "
                '(LoraProOptimizerFactory, {"lr": 2e-5}): Trainer does not pass TrainingArguments to factories.'
            )
        return create_lorapro_optimizer(model, **kwargs)


class LoraProTrainer(Trainer):
    """`transformers.Trainer` whose default optimizer is LoraProAdamW.

    lr, betas, eps and weight_decay come from TrainingArguments (the usual
    learning_rate, adam_beta1/2, adam_epsilon, weight_decay); lorapro_mode and
    lorapro_damping default to the model's LoraProConfig, then to "full", 1e-8;
    lorapro_factored=True is full mode's memory option (see LoraProAdamW).
    Everything else (accumulation, clipping, schedules, checkpoints with the
    optimizer moments, bf16 autocast, DDP, FSDP2 with the moments sharded by rows:
    `fsdp=True, fsdp_config={"version": 2}`) is Trainer's own machinery.
    DeepSpeed ZeRO is refused: it hands optimizers flat partitions.
    """

    def __init__(
        self,
        *args: Any,
        lorapro_mode: str | None = None,
        lorapro_damping: float | None = None,
        lorapro_moment_dtype: torch.dtype = torch.float32,
        lorapro_factored: bool = False,
        **kwargs: Any,
    ):
        self.lorapro_mode = lorapro_mode
        self.lorapro_damping = lorapro_damping
        self.lorapro_moment_dtype = lorapro_moment_dtype
        self.lorapro_factored = lorapro_factored
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None and self.optimizer_cls_and_kwargs is None:
            check_not_deepspeed(active=getattr(self, "is_deepspeed_enabled", False))
            opt_model = self.model if model is None else model
            from_config = config_kwargs(opt_model)
            args = self.args
            self.optimizer = LoraProAdamW(
                opt_model,
                lr=args.learning_rate,
                betas=(args.adam_beta1, args.adam_beta2),
                eps=args.adam_epsilon,
                weight_decay=args.weight_decay,
                mode=self.lorapro_mode or from_config.get("mode", "full"),
                damping=self.lorapro_damping if self.lorapro_damping is not None else from_config.get("damping", 1e-8),
                moment_dtype=self.lorapro_moment_dtype,
                b_damping=from_config.get("b_damping"),
                factored=self.lorapro_factored,
            )
            return self.optimizer
        return super().create_optimizer(model)
