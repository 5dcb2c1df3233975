"""LoRA-Pro under transformers.Trainer: factory hook and LoraProTrainer, with
accumulation, clipping, schedules, checkpoint/resume, bf16 and column removal."""

import math

import pytest
import torch
from datasets import Dataset
from peft import get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

from hf_clipadapt import LoraProAdamW, LoraProConfig, LoraProOptimizerFactory, LoraProTrainer


def _model(mode="full", dtype=torch.float32):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=48,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    lcfg = LoraProConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "up_proj"],
        lora_dropout=0.0,
        modules_to_save=["lm_head"],
        lorapro_mode=mode,
    )
    return get_peft_model(LlamaForCausalLM(cfg), lcfg).to(dtype)


def _data(n=16, extra_column=False):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 48, (n, 8), generator=g).tolist()
    cols = {"input_ids": ids, "labels": ids}
    if extra_column:
        cols["text"] = [f"row {i}" for i in range(n)]  # not a forward() argument
    return Dataset.from_dict(cols)


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=4,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
        lr_scheduler_type="constant",
    )
    base.update(kw)
    return TrainingArguments(**base)


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_same(a, b, rtol):
    assert a.keys() == b.keys()
    for n in a:
        rel = ((a[n] - b[n]).norm() / b[n].norm().clamp_min(1e-12)).item()
        assert rel < rtol, (n, rel)


def test_factory_hook_and_subclass_give_the_same_run(tmp_path):
    m1, m2 = _model(), _model()
    # One batch of 4 rows, seen at every step, so the training loss must fall.
    t1 = Trainer(
        model=m1,
        args=_args(tmp_path / "a"),
        train_dataset=_data(4),
        optimizer_cls_and_kwargs=(LoraProOptimizerFactory, {"lr": 1e-2, "mode": "full"}),
    )
    t1.train()
    t2 = LoraProTrainer(model=m2, args=_args(tmp_path / "b"), train_dataset=_data(4), lorapro_mode="full")
    t2.train()
    assert isinstance(t1.optimizer.optimizer, LoraProAdamW) and isinstance(t2.optimizer.optimizer, LoraProAdamW)
    _assert_same(_trainable(m1), _trainable(m2), 1e-6)
    losses = [h["loss"] for h in t2.state.log_history if "loss" in h]
    assert len(losses) == 4 and losses == sorted(losses, reverse=True)


def test_factory_needs_lr(tmp_path):
    t = Trainer(
        model=_model(),
        args=_args(tmp_path),
        train_dataset=_data(),
        optimizer_cls_and_kwargs=(LoraProOptimizerFactory, {"mode": "full"}),
    )
    with pytest.raises(TypeError, match="learning rate"):
        t.create_optimizer()


@pytest.mark.parametrize("mode", ["full", "efficient"])
def test_gradient_accumulation_equals_the_large_batch(tmp_path, mode):
    # float64: the closed form inverts BᵀB, which is ill-conditioned while B is
    # still tiny, so float32 summation-order noise (1e-7) would be amplified to
    # ~1e-5 and hide what this test is about.
    m1, m2 = _model(mode, torch.float64), _model(mode, torch.float64)
    LoraProTrainer(model=m1, args=_args(tmp_path / "a", per_device_train_batch_size=4), train_dataset=_data()).train()
    LoraProTrainer(
        model=m2,
        args=_args(tmp_path / "b", per_device_train_batch_size=2, gradient_accumulation_steps=2),
        train_dataset=_data(),
    ).train()
    _assert_same(_trainable(m1), _trainable(m2), 1e-9)


class _Recorder(TrainerCallback):
    def __init__(self, model, optimizer_getter):
        self.model, self.get_opt, self.norms, self.lrs = model, optimizer_getter, [], []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        self.lrs.append([g["lr"] for g in self.get_opt().param_groups])


def test_max_grad_norm_clips_what_the_optimizer_sees(tmp_path):
    model = _model()
    trainer = LoraProTrainer(model=model, args=_args(tmp_path, max_grad_norm=0.05), train_dataset=_data())
    rec = _Recorder(model, lambda: trainer.optimizer)
    trainer.add_callback(rec)
    trainer.train()
    raw = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    assert min(raw) > 0.05  # so the clip was active on every step
    assert all(n <= 0.05 * (1 + 1e-4) for n in rec.norms)


def test_warmup_and_cosine_schedule_drive_both_groups(tmp_path):
    model = _model()
    trainer = LoraProTrainer(
        model=model,
        args=_args(tmp_path, max_steps=6, warmup_steps=2, lr_scheduler_type="cosine"),
        train_dataset=_data(24),
    )
    rec = _Recorder(model, lambda: trainer.optimizer)
    trainer.add_callback(rec)
    trainer.train()

    def expected(step):  # linear warmup over 2 steps, then half a cosine to 0 at step 6
        if step < 2:
            return 1e-2 * step / 2
        return 1e-2 * 0.5 * (1 + math.cos(math.pi * (step - 2) / 4))

    assert [lora for lora, plain in rec.lrs] == pytest.approx([expected(s) for s in range(6)])
    assert all(lora == plain for lora, plain in rec.lrs)


@pytest.mark.parametrize("mode", ["full", "efficient"])
def test_resume_from_checkpoint_restores_moments_and_equals_uninterrupted(tmp_path, mode):
    data = _data(24)
    full_run = _model(mode)
    LoraProTrainer(
        model=full_run,
        args=_args(
            tmp_path / "a",
            max_steps=6,
            save_strategy="steps",
            save_steps=3,
            lr_scheduler_type="cosine",
            warmup_steps=1,
        ),
        train_dataset=data,
    ).train()
    ckpt = tmp_path / "a" / "checkpoint-3"
    assert (ckpt / "optimizer.pt").exists()
    saved = torch.load(ckpt / "optimizer.pt", weights_only=True)
    a_name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    assert int(saved["state"][a_name]["step"]) == 3 and saved["lorapro"]["mode"] == mode

    resumed = _model(mode)
    trainer = LoraProTrainer(
        model=resumed,
        args=_args(tmp_path / "b", max_steps=6, lr_scheduler_type="cosine", warmup_steps=1),
        train_dataset=data,
    )
    trainer.train(resume_from_checkpoint=str(ckpt))
    _assert_same(_trainable(resumed), _trainable(full_run), 1e-6)
    assert int(trainer.optimizer.state_dict()["state"][a_name]["step"]) == 6


def test_bf16_autocast_trains_and_keeps_float32_master_weights(tmp_path):
    model = _model()
    before = _trainable(model)
    trainer = LoraProTrainer(model=model, args=_args(tmp_path, bf16=True), train_dataset=_data())
    trainer.train()
    after = _trainable(model)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in after.values())
    assert all(not torch.equal(before[n], after[n]) for n in after)
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_remove_unused_columns_drops_extra_dataset_columns(tmp_path):
    trainer = LoraProTrainer(
        model=_model(),
        args=_args(tmp_path, max_steps=2, remove_unused_columns=True),
        train_dataset=_data(extra_column=True),
    )
    trainer.train()
    assert trainer.state.global_step == 2


def test_deepspeed_is_refused_by_the_trainer(tmp_path):
    trainer = LoraProTrainer(model=_model(), args=_args(tmp_path), train_dataset=_data())
    trainer.is_deepspeed_enabled = True  # what Trainer sets when args.deepspeed is given
    with pytest.raises(RuntimeError, match="does not run under DeepSpeed ZeRO"):
        trainer.create_optimizer()


def test_factory_hook_takes_the_sgd_variant(tmp_path):
    from hf_clipadapt import LoraProSGD

    trainer = Trainer(
        model=_model(),
        args=_args(tmp_path, max_steps=2),
        train_dataset=_data(),
        optimizer_cls_and_kwargs=(LoraProOptimizerFactory, {"lr": 1e-2, "optimizer_cls": LoraProSGD, "momentum": 0.9}),
    )
    trainer.train()
    assert isinstance(trainer.optimizer.optimizer, LoraProSGD) and trainer.state.global_step == 2
