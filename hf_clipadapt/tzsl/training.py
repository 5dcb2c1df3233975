"""TZSL's training on the shared training path (`AdaptationTrainer`, a `transformers.Trainer`).

`TZSLModel.fit` runs three phases, each a Trainer run, so each runs under DDP when
the script is started with `accelerate launch`:

1. `pretrain_decoder`: the attribute decoder regresses seen features onto their
   class attributes (weighted L1);
2. `TZSLGANTrainer`: the adversarial phase. Its `training_step` first runs
   `critic_iters` critic steps (WGAN-GP, both critics, one optimiser) each followed
   by a decoder step on real seen pairs, both with their own optimisers and their
   gradients averaged over the processes; then the generator step (encoder,
   generator, feedback) goes through Trainer's normal path: `compute_loss`,
   backward through the DDP-wrapped `_GeneratorObjective`, Trainer's optimiser;
3. `train_head`: the ZSL and GZSL softmax classifiers on synthetic unseen (and
   real seen) features.

Batch sizes (`TZSLTrainingArguments.batch_size`, `cls_batch_size`) are global: each of W processes draws `batch_size / W`
samples per step, so the averaged gradients are those of the global batch. Every
process draws its own samples (the global RNG is seeded with seed + rank at the
first adversarial step; on one process the phase then draws exactly as the
earlier hand-written loop did). Checkpoints are not offered: the adversarial phase is short
and its critics live outside the wrapped model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import TrainerCallback

from ..training.arguments import AdaptationTrainingArguments, split_global_batch
from ..training.collate import TensorRows
from ..training.trainer import AdaptationTrainer
from . import functional as Fz

_SUMS = ("critic_seen", "critic_unseen", "vae", "decoder", "generator")


def adam_arguments(
    *, epochs: int, batch_size: int, lr: float, seed: int, progress: bool, **kwargs
) -> AdaptationTrainingArguments:
    """Arguments of a TZSL phase: Adam(β = 0.5, 0.999), constant lr, no clipping, one log per
    epoch, `batch_size` global (split over the processes)."""
    args = AdaptationTrainingArguments(
        num_train_epochs=epochs,
        learning_rate=lr,
        optim="adamw_torch",
        adam_beta1=0.5,
        adam_beta2=0.999,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        logging_strategy="epoch",
        seed=seed,
        disable_tqdm=None if progress else True,
        **kwargs,
    )
    args.per_device_train_batch_size = split_global_batch(batch_size, args.world_size)
    return args


def training_device() -> torch.device:
    """The device the training path will use (the model's parts must all be there)."""
    return AdaptationTrainingArguments(disable_tqdm=True).device


class _DecoderObjective(nn.Module):
    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, features, attributes):
        return {"loss": Fz.weighted_l1(self.decoder(features)[0], attributes)}


class _HeadObjective(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, inputs, labels):
        return {"loss": F.cross_entropy(self.head(inputs), labels)}


def pretrain_decoder(model, x_s, a_s, *, settings=None, seed: int, progress: bool):
    """Phase 1; returns (per-epoch mean losses, the decoder's optimiser, which phase 2 continues).
    `settings`: the run's `TZSLTrainingArguments` (None: `model.training_arguments(seed)`)."""
    c = settings if settings is not None else model.training_arguments(seed)
    args = adam_arguments(
        epochs=c.decoder_pretrain_epochs, batch_size=c.batch_size, lr=c.decoder_lr, seed=seed, progress=progress
    )
    trainer = AdaptationTrainer(model=_DecoderObjective(model.decoder), args=args, train_dataset=TensorRows(x_s, a_s))
    trainer.train()
    history = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # Accelerate's wrapper off
    return history, optimizer


def train_head(head: nn.Linear, feats, labels, *, settings, seed: int, progress: bool) -> float:
    """Phase 3, one classifier: cross-entropy on fixed features; returns the last logged loss.
    `settings`: the run's `TZSLTrainingArguments`."""
    args = adam_arguments(
        epochs=settings.cls_epochs,
        batch_size=settings.cls_batch_size,
        lr=settings.cls_lr,
        seed=seed,
        progress=progress,
    )
    trainer = AdaptationTrainer(model=_HeadObjective(head), args=args, train_dataset=TensorRows(feats, labels))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return float(losses[-1]) if losses else float("nan")


class _Steps(Dataset):
    """One item per generator step: the batches themselves are drawn in `training_step`."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"step": i}


class _GeneratorObjective(nn.Module):
    """The generator step's loss. It owns (for DDP) the encoder, generator and feedback only;
    the decoder and critics it calls are reached through the model, so DDP does not reduce
    their gradients (their own steps do, with `average_gradients`).

    `fb_seen` / `fb_unseen` are the feedback weights of this pass (0 in the first pass of an
    epoch): a1 for the encoded seen features, a2 for the D2 fakes, as in mrflogs/icassp23,
    train.py, lines 279-284 and 312-317. The unseen reconstruction term is the leak-free
    one: Dec(G(z, Dec(x_u))) against Dec(x_u), where the reference code draws the condition
    from the test-unseen labels (train.py, lines 332-348; util.py, lines 105-111)."""

    def __init__(self, model, x_u, unseen_idx, settings):
        super().__init__()
        self.encoder, self.generator, self.feedback = model.encoder, model.generator, model.feedback
        self.__dict__.update(tzsl=model, x_u=x_u, unseen_idx=unseen_idx, settings=settings)  # used, not owned

    def forward(self, features, attributes, fb_seen: float = 0.0, fb_unseen: float = 0.0):
        t, c = self.tzsl, self.tzsl.config
        mu, logvar = self.encoder(features, attributes)
        recon = t._generate(Fz.reparameterize(mu, logvar), attributes, fb_seen)
        loss_vae = Fz.vae_loss(recon, features, mu, logvar)
        loss_g = -t.critic_seen(recon, attributes).mean()  # adversarial term on the encoded noise's features
        loss_rec = Fz.weighted_l1(t.decoder(recon)[0], attributes)
        if self.x_u is not None:
            _, cond, fake_u = t._unseen_batch(self.x_u, self.unseen_idx, features.shape[0], features.device, fb_unseen)
            loss_g = loss_g - (t.critic_unseen(fake_u, cond) if c.conditional_d2 else t.critic_unseen(fake_u)).mean()
            if c.conditional_d2:
                loss_rec = loss_rec + Fz.weighted_l1(t.decoder(fake_u)[0], cond)
        loss = loss_vae + self.settings.gan_weight * loss_g + self.settings.decoder_weight * loss_rec
        return {"loss": loss, "vae": loss_vae.detach(), "generator": loss_g.detach()}


class _EpochRecord(TrainerCallback):
    def __init__(self, trainer: TZSLGANTrainer):
        self.trainer = trainer

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer.record_epoch()


class TZSLGANTrainer(AdaptationTrainer):
    """Phase 2 (see the module docstring). `x_u` is None in inductive mode.

    An epoch is `feedback_passes` passes of `steps_per_epoch` generator steps; the feedback
    module is used, and so trained, only after the first pass (mrflogs/icassp23, train.py,
    lines 119-121, 183-190 and 359-362: `for loop in range(feedback_loop)`, `if loop == 1`).
    With `adaptive_gp`, the penalty weight follows `functional.adapt_gp_weight` after every
    round of critic steps (train.py, lines 239-243). `args`: the phase's Trainer arguments;
    `settings`: the run's `TZSLTrainingArguments` (None: `model.training_arguments(args.seed)`)."""

    def __init__(self, model, args, *, settings=None, x_s, y_s, x_u, unseen_idx, decoder_optimizer, accelerator=None):
        c = self.settings = settings if settings is not None else model.training_arguments(args.seed)
        self.tzsl, self.x_s, self.y_s, self.x_u, self.unseen_idx = model, x_s, y_s, x_u, unseen_idx
        self.critics = [model.critic_seen] + ([model.critic_unseen] if x_u is not None else [])
        self.opt_d = torch.optim.Adam(
            [p for m in self.critics for p in m.parameters()], lr=c.learning_rate, betas=(0.5, 0.999)
        )
        self.opt_dec, self.log_to, self.history = decoder_optimizer, accelerator, []
        self._sums = dict.fromkeys(_SUMS, 0.0)
        self.steps_per_pass = c.steps_per_epoch or max(1, x_s.shape[0] // c.batch_size)
        self.steps_per_epoch = self.steps_per_pass * model.config.feedback_passes
        self.gp_weight, self.gp_weights = float(c.gp_weight), []
        self.batch = args.per_device_train_batch_size  # samples per process and step
        args.per_device_train_batch_size = 1  # the loader hands out step numbers only
        objective = _GeneratorObjective(model, x_u, unseen_idx, settings)
        super().__init__(model=objective, args=args, train_dataset=_Steps(self.steps_per_epoch))
        self.add_callback(_EpochRecord(self))
        self._seed_pending = False

    def parameter_groups(self, model):
        c = self.settings
        # The reference builds the encoder's Adam with torch's default betas (0.9, 0.999), the
        # generator's and feedback's with beta1 = 0.5 (akshitac8/tfvaegan, train_images.py, lines 109-112).
        groups = [
            {"params": list(model.encoder.parameters()), "betas": (0.9, 0.999)},
            {"params": list(model.generator.parameters())},
        ]
        if model.feedback is not None:
            groups.append({"params": list(model.feedback.parameters()), "lr_scale": c.feedback_lr / c.learning_rate})
        return groups

    def get_train_dataloader(self) -> DataLoader:
        """Every process runs every step (no sharding: each draws its own batches), in order, so
        a step's number tells its pass. The loader's own generator keeps epoch starts from
        drawing on the global RNG the batches come from."""
        return DataLoader(
            self.train_dataset,
            batch_size=1,
            collate_fn=self.data_collator,
            generator=torch.Generator().manual_seed(self.args.seed),
        )

    def train(self, **kwargs):
        """Critics and decoder start equal everywhere; each process then draws its own batches."""
        self.broadcast_from_main(self.tzsl.critic_seen)
        if self.tzsl.critic_unseen is not None:
            self.broadcast_from_main(self.tzsl.critic_unseen)
        self.broadcast_from_main(self.tzsl.decoder)
        self._seed_pending = True  # seeded at the first step, after Trainer's own set-up
        return super().train(**kwargs)

    def _seen_batch(self):
        b = torch.randint(0, self.x_s.shape[0], (self.batch,), device=self.x_s.device)
        return self.x_s[b], self.tzsl.class_attributes[self.y_s[b]]

    def training_step(self, model, inputs, num_items_in_batch=None):
        c, s = self.tzsl.config, self.settings
        if self._seed_pending:
            torch.manual_seed(self.args.seed + self.args.process_index)
            self._seed_pending = False
        feedback_on = int(inputs["step"].reshape(-1)[0]) >= self.steps_per_pass  # after the first pass
        fb = s.feedback_train_weight if feedback_on else 0.0
        penalty = sum(self._critic_and_decoder_step(fb) for _ in range(s.critic_iters))
        if s.adaptive_gp:
            self._adapt_gp(penalty / (s.critic_iters * len(self.critics)))
        xs, as_ = self._seen_batch()
        for m in self.critics:  # the critics only judge the generator step
            m.requires_grad_(False)
        self.opt_dec.zero_grad(set_to_none=True)
        try:
            batch = {
                "features": xs,
                "attributes": as_,
                "fb_seen": fb,
                "fb_unseen": c.feedback_eval_weight if feedback_on else 0.0,
            }
            loss = super().training_step(model, batch, num_items_in_batch)
        finally:
            for m in self.critics:
                m.requires_grad_(True)
        if not c.freeze_decoder:  # the decoder also descends the generator loss (tfvaegan, lines 258-259)
            self.average_gradients(list(self.tzsl.decoder.parameters()))
            self.opt_dec.step()
        return loss

    def _adapt_gp(self, mean_penalty: float) -> None:
        if self.accelerator.num_processes > 1:  # one weight for every process
            t = torch.tensor([mean_penalty], device=self.x_s.device, dtype=torch.float64)
            torch.distributed.all_reduce(t)
            mean_penalty = t.item() / self.accelerator.num_processes
        self.gp_weight = Fz.adapt_gp_weight(self.gp_weight, mean_penalty)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        out = model(**inputs)
        self._sums["vae"] += out["vae"].item()
        self._sums["generator"] += out["generator"].item()
        return (out["loss"], out) if return_outputs else out["loss"]

    def _critic_and_decoder_step(self, fb: float) -> float:
        """One decoder step on real seen pairs, then one step of both critics (in the reference
        order, mrflogs/icassp23, train.py, lines 146-229). Returns the summed unweighted penalty."""
        t, c, sums, k = self.tzsl, self.tzsl.config, self._sums, self.settings.critic_iters
        xs, as_ = self._seen_batch()
        loss_dec = self.settings.decoder_weight * Fz.weighted_l1(t.decoder(xs)[0], as_)
        self._own_step(self.opt_dec, loss_dec, list(t.decoder.parameters()))
        sums["decoder"] += loss_dec.item() / k
        with torch.no_grad():
            if c.encoded_noise:  # fakes from the encoder's code of the real batch (train.py, lines 169-177)
                z = Fz.reparameterize(*t.encoder(xs, as_))
            else:
                z = torch.randn(self.batch, c.latent_dim, device=xs.device)
            fake_s = t._generate(z, as_, fb)
        d1 = lambda x, a=as_: t.critic_seen(x, a)  # noqa: E731
        pen = Fz.gradient_penalty(d1, xs, fake_s, 1.0)
        loss_d = Fz.wgan_critic_loss(d1(xs), d1(fake_s)) + self.gp_weight * pen
        sums["critic_seen"] += loss_d.item() / k
        penalty = pen.item()
        if self.x_u is not None:
            with torch.no_grad():
                xu, cond, fake_u = t._unseen_batch(self.x_u, self.unseen_idx, self.batch, xs.device, fb)
            d2 = (lambda x, a=cond: t.critic_unseen(x, a)) if c.conditional_d2 else t.critic_unseen
            pen2 = Fz.gradient_penalty(d2, xu, fake_u, 1.0)
            loss_d2 = Fz.wgan_critic_loss(d2(xu), d2(fake_u)) + self.gp_weight * pen2
            loss_d = loss_d + loss_d2
            sums["critic_unseen"] += loss_d2.item() / k
            penalty += pen2.item()
        self._own_step(
            self.opt_d, self.settings.gan_weight * loss_d, [p for m in self.critics for p in m.parameters()]
        )
        return penalty

    def _own_step(self, optimizer, loss, params) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.average_gradients(params)
        optimizer.step()

    def record_epoch(self) -> None:
        record = {**{k: v / self.steps_per_epoch for k, v in self._sums.items()}, "gp_weight": self.gp_weight}
        self.history.append(record)
        if self.log_to is not None:
            self.log_to.log({f"train/{k}": v for k, v in record.items()}, step=len(self.history) - 1)
        self._sums = dict.fromkeys(_SUMS, 0.0)
