"""Transductive zero-shot learning with an attribute decoder (ICASSP 2023), leak-free.

A conditional VAE-GAN learns to generate visual features from class attributes
(TF-VAEGAN style). An attribute decoder Dec maps features back to attributes.
The second critic D2 sees unlabelled unseen-class features conditioned on the
decoder's pseudo-attributes, D2(x_u, Dec(x_u)), against generated features
G(z, Dec(x_u)) under the same condition, so the generator matches the joint
distribution of features and semantics on the unseen classes, not only the marginal.
A softmax classifier on [x; Dec(x); Dec hidden] is then trained on synthetic
unseen features (ZSL) and on real seen + synthetic unseen features (GZSL).

D2's condition is only as good as Dec(x_u). With very few seen classes (7 on the
Fashion-MNIST benchmark) every unseen image decoded to a seen-like attribute, and
the conditional D2 collapsed in 2 of 3 seeds there; see benchmarks/tzsl/RESULTS.md.
Seed torch before building the model (`from_data`) as well as in `fit`: both the
initial weights and training draw from it.

No test label is ever read during `fit`: the number of epochs is fixed by the
config, unseen conditions are drawn uniformly (or from a label-free estimate), and
any model selection belongs on `data.pseudo_unseen_split` (seen classes only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..modeling_utils import AdaptedPreTrainedModel, register_auto
from ..metrics import gzsl_scores, per_class_accuracy
from ..progress import progress_bar
from . import functional as Fz
from .configuration_tzsl import TZSLConfig
from .data import ZSLData, check_split


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.LeakyReLU(0.2), nn.Linear(d_hidden, d_out))


class TZSLEncoder(nn.Module):
    """E(x, a) -> (mu, logvar) of the latent code."""

    def __init__(self, cfg: TZSLConfig):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(cfg.feature_dim + cfg.attribute_dim, cfg.hidden_dim), nn.LeakyReLU(0.2))
        self.mu = nn.Linear(cfg.hidden_dim, cfg.latent_dim)
        self.logvar = nn.Linear(cfg.hidden_dim, cfg.latent_dim)

    def forward(self, x, a):
        h = self.body(torch.cat([x, a], -1))
        return self.mu(h), self.logvar(h)


class TZSLGenerator(nn.Module):
    """G(z, a) -> sigmoid features; an optional feedback vector is added to its hidden layer."""

    def __init__(self, cfg: TZSLConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.latent_dim + cfg.attribute_dim, cfg.hidden_dim)
        self.fc2 = nn.Linear(cfg.hidden_dim, cfg.feature_dim)

    def forward(self, z, a, feedback: torch.Tensor | None = None):
        h = F.leaky_relu(self.fc1(torch.cat([z, a], -1)), 0.2)
        if feedback is not None:
            h = h + feedback
        return torch.sigmoid(self.fc2(h))


class TZSLCritic(nn.Module):
    """WGAN critic D(x[, a]); unconditional when `attribute_dim` is 0."""

    def __init__(self, feature_dim: int, attribute_dim: int, hidden_dim: int):
        super().__init__()
        self.conditional = attribute_dim > 0
        self.net = _mlp(feature_dim + attribute_dim, hidden_dim, 1)

    def forward(self, x, a=None):
        return self.net(torch.cat([x, a], -1) if self.conditional else x).squeeze(-1)


class TZSLAttributeDecoder(nn.Module):
    """Dec(x) -> (L2-normalised attributes, hidden activations)."""

    def __init__(self, cfg: TZSLConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.feature_dim, cfg.decoder_hidden_dim)
        self.fc2 = nn.Linear(cfg.decoder_hidden_dim, cfg.attribute_dim)

    def forward(self, x):
        h = F.leaky_relu(self.fc1(x), 0.2)
        return F.normalize(self.fc2(h), dim=-1), h


@dataclass
class TZSLOutput(ModelOutput):
    """logits: [N, num_classes] scores of the GZSL classifier (or of the ZSL one,
    with -inf on seen classes). pseudo_attributes: Dec(x)."""

    logits: torch.Tensor | None = None
    pseudo_attributes: torch.Tensor | None = None


class TZSLPreTrainedModel(AdaptedPreTrainedModel):
    config_class = TZSLConfig
    # No pretrained base: the feature generator is the core part (transformers strips an empty
    # prefix from every key, so the attribute must exist and be non-empty).
    base_model_prefix = "generator"
    main_input_name = "features"
    card_template = "tzsl.md"
    card_tags = ("zero-shot-learning", "feature-generation")
    card_pipeline_tag = None  # it classifies features, not images

    @torch.no_grad()
    def _init_weights(self, module):
        # As in the reference VAE-GANs: N(0, 0.02) weights, zero biases.
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)


class TZSLModel(TZSLPreTrainedModel):
    """Feature generator, attribute decoder, two critics and the final classifiers.

    `fit(data)` trains everything; `forward(features)` gives logits over all classes
    (GZSL head; `task="zsl"` for the unseen-only head); `evaluate(data)` reports
    ZSL accuracy and GZSL u / s / H (per-class mean top-1, in percent).
    """

    def __init__(self, config: TZSLConfig):
        super().__init__(config)
        c = config
        self.encoder = TZSLEncoder(c)
        self.generator = TZSLGenerator(c)
        self.decoder = TZSLAttributeDecoder(c)
        self.feedback = _mlp(c.decoder_hidden_dim, c.hidden_dim, c.hidden_dim) if c.feedback else None
        self.critic_seen = TZSLCritic(c.feature_dim, c.attribute_dim, c.hidden_dim)
        self.critic_unseen = (
            TZSLCritic(c.feature_dim, c.attribute_dim if c.conditional_d2 else 0, c.hidden_dim)
            if c.mode == "transductive"
            else None
        )
        cls_in = c.feature_dim + c.attribute_dim + c.decoder_hidden_dim
        self.gzsl_head = nn.Linear(cls_in, c.num_classes)
        n_unseen = len(c.unseen_classes) if c.unseen_classes else 1
        self.zsl_head = nn.Linear(cls_in, n_unseen)
        # Fitted statistics: persistent fp32 buffers saved with the weights.
        self.register_buffer("feature_min", torch.zeros(c.feature_dim, dtype=torch.float32))
        self.register_buffer("feature_max", torch.ones(c.feature_dim, dtype=torch.float32))
        self.register_buffer("class_attributes", torch.zeros(c.num_classes, c.attribute_dim, dtype=torch.float32))
        self.register_buffer("unseen_prior", torch.full((n_unseen,), 1.0 / n_unseen, dtype=torch.float32))
        self.post_init()

    # ------------------------------------------------------------------ helpers
    @classmethod
    def from_data(cls, data: ZSLData, preset: str = "fast", **overrides) -> "TZSLModel":
        """A fresh model sized for `data` from a preset ("fast", "cub", "awa2", "sun", "flo")."""
        cfg = TZSLConfig.from_preset(
            preset, feature_dim=data.feature_dim, attribute_dim=data.attributes.shape[1],
            num_classes=data.num_classes, seen_classes=data.seen_classes, unseen_classes=data.unseen_classes,
            class_names=data.class_names, **overrides,
        )  # fmt: skip
        return cls(cfg)

    @property
    def is_fitted(self) -> bool:
        return bool(self.config.seen_classes) and bool(self.class_attributes.abs().sum() > 0)

    def _check_features(self, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.config.feature_dim:
            raise ValueError(
                f"this model takes features of shape [N, {self.config.feature_dim}], got {tuple(features.shape)}: "
                "use the same backbone (and pooling) as the features it was fitted on"
            )

    def scale(self, features: torch.Tensor) -> torch.Tensor:
        """Min-max scaling fitted on the seen-train features."""
        return Fz.minmax_apply(features, self.feature_min, self.feature_max)

    def classifier_input(self, scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[x; Dec(x); Dec hidden] of scaled features, and Dec(x)."""
        att, hidden = self.decoder(scaled)
        return torch.cat([scaled, att, hidden], -1), att

    def generate(self, attributes: torch.Tensor, feedback_weight: float | None = None) -> torch.Tensor:
        """Synthesise scaled features from (normalised) class attributes, z ~ N(0, I)."""
        z = torch.randn(attributes.shape[0], self.config.latent_dim, device=attributes.device)
        return self._generate(z, attributes, self.config.feedback_eval_weight if feedback_weight is None else feedback_weight)

    def _generate(self, z, a, feedback_weight: float):
        x = self.generator(z, a)
        if self.feedback is None or feedback_weight == 0:
            return x
        # Feedback loop: the decoder's hidden view of a first sample refines the generator's hidden layer.
        _, hidden = self.decoder(x)
        return self.generator(z, a, feedback=feedback_weight * self.feedback(hidden))

    # ------------------------------------------------------------------ inference
    def forward(self, features: torch.Tensor, task: str = "gzsl", return_dict: bool = True, **kwargs) -> TZSLOutput:
        """Raw (unscaled) features [N, feature_dim] -> logits over all `num_classes`.

        task="gzsl": the classifier trained on real seen + synthetic unseen features.
        task="zsl": the unseen-only classifier; seen-class logits are -inf.
        """
        if task not in ("gzsl", "zsl"):
            raise ValueError(f"task must be 'gzsl' or 'zsl', got {task!r}")
        if not self.is_fitted:
            raise RuntimeError("this TZSLModel is not fitted yet: call model.fit(data) first")
        self._check_features(features)
        inputs, att = self.classifier_input(self.scale(features.to(self.feature_min.device)))
        if task == "gzsl":
            logits = self.gzsl_head(inputs)
        else:
            logits = inputs.new_full((inputs.shape[0], self.config.num_classes), float("-inf"))
            logits[:, self.config.unseen_classes] = self.zsl_head(inputs)
        out = TZSLOutput(logits=logits, pseudo_attributes=att)
        return out if return_dict else out.to_tuple()

    @torch.no_grad()
    def predict_logits(self, features: torch.Tensor, task: str = "gzsl", batch_size: int = 4096) -> torch.Tensor:
        was_training = self.training
        self.eval()
        out = torch.cat([self(features[i : i + batch_size], task=task).logits.cpu() for i in range(0, features.shape[0], batch_size)])
        self.train(was_training)
        return out

    @torch.no_grad()
    def evaluate(self, data: ZSLData, *, record_as: str | None = None, split: str = "test") -> dict:
        """ZSL accuracy (unseen test, unseen classes only) and GZSL u / s / H, per-class mean
        top-1 in %. `record_as="<dataset name>"` stores them for the model card."""
        result = self._evaluate(data)
        if record_as:
            self.record_results(record_as, result, split=split)
        return result

    def _evaluate(self, data: ZSLData) -> dict:
        if data.test_unseen_labels.lt(0).any():
            raise ValueError("evaluate needs test-unseen labels; they are -1 (unknown) in this data")
        zsl = per_class_accuracy(self.predict_logits(data.test_unseen_features, "zsl"), data.test_unseen_labels, data.unseen_classes)
        feats = torch.cat([data.test_seen_features, data.test_unseen_features])
        labels = torch.cat([data.test_seen_labels, data.test_unseen_labels])
        g = gzsl_scores(self.predict_logits(feats, "gzsl"), labels, data.seen_classes, data.unseen_classes)
        return {"zsl": zsl, "gzsl_unseen": g["unseen"], "gzsl_seen": g["seen"], "gzsl_H": g["H"]}

    # ------------------------------------------------------------------ training
    def _check_data(self, data: ZSLData) -> None:
        c = self.config
        if data.feature_dim != c.feature_dim:
            raise ValueError(f"data has features of width {data.feature_dim} but the model was built for {c.feature_dim}")
        if tuple(data.attributes.shape) != (c.num_classes, c.attribute_dim):
            raise ValueError(
                f"data.attributes is {tuple(data.attributes.shape)} but the model expects "
                f"[num_classes={c.num_classes}, attribute_dim={c.attribute_dim}]"
            )
        check_split(data.attributes, data.seen_classes, data.unseen_classes)
        if not c.unseen_classes:
            raise ValueError("the config does not name its unseen classes: build the model with TZSLModel.from_data(data, preset)")
        if c.unseen_classes and list(c.unseen_classes) != list(data.unseen_classes):
            raise ValueError(f"the model was built for unseen classes {c.unseen_classes}, data has {data.unseen_classes}")

    def fit(
        self,
        data: ZSLData,
        unlabelled_features: torch.Tensor | None = None,
        seed: int = 0,
        accelerator=None,
        progress: bool = True,
    ) -> dict:
        """Train the generator, decoder and critics, then both classifiers. Returns a history.

        Uses `data.train_*` (labelled seen) and, in transductive mode, the unlabelled
        pool `unlabelled_features` (default: `data.test_unseen_features`, whose labels
        are never read, the standard transductive protocol). Pass the whole test set
        (seen + unseen, unlabelled) for the stricter setting.
        """
        self._check_data(data)
        c = self.config
        device = accelerator.device if accelerator is not None else self.feature_min.device
        is_main = accelerator is None or accelerator.is_main_process
        log = (lambda d, step: accelerator.log(d, step=step)) if accelerator is not None else (lambda d, step: None)
        self.to(device)
        torch.manual_seed(seed)
        c.seen_classes, c.unseen_classes = list(data.seen_classes), list(data.unseen_classes)
        if data.class_names is not None:
            c.class_names = list(data.class_names)

        # Preprocessing fitted on seen-train only.
        lo, hi = Fz.minmax_fit(data.train_features)
        self.feature_min.copy_(lo.to(device))
        self.feature_max.copy_(hi.to(device))
        att = data.attributes.float().to(device)
        self.class_attributes.copy_(F.normalize(att, dim=-1) if c.normalize_attributes else att)
        x_s = self.scale(data.train_features.to(device))
        y_s = data.train_labels.to(device)
        a_all = self.class_attributes
        unseen_idx = torch.tensor(c.unseen_classes, device=device)
        transductive = c.mode == "transductive"
        if transductive:
            pool = data.test_unseen_features if unlabelled_features is None else unlabelled_features
            self._check_features(pool)
            x_u = self.scale(pool.to(device))
        history = {"decoder_pretrain": [], "epochs": []}

        # 1) Pre-train the attribute decoder on seen pairs.
        opt_dec = torch.optim.Adam(self.decoder.parameters(), lr=c.decoder_lr, betas=(0.5, 0.999))
        n = x_s.shape[0]
        for ep in range(c.decoder_pretrain_epochs):
            perm, total = torch.randperm(n, device=device), 0.0
            for i in range(0, n, c.batch_size):
                b = perm[i : i + c.batch_size]
                loss = Fz.weighted_l1(self.decoder(x_s[b])[0], a_all[y_s[b]])
                opt_dec.zero_grad(set_to_none=True)
                loss.backward()
                opt_dec.step()
                total += loss.item() * b.numel()
            history["decoder_pretrain"].append(total / n)

        # 2) The label-free unseen prior (uniform unless asked otherwise).
        if transductive and c.unseen_prior == "pseudo":
            with torch.no_grad():
                pseudo = torch.cat([self.decoder(x_u[i : i + 4096])[0] for i in range(0, x_u.shape[0], 4096)])
            self.unseen_prior.copy_(Fz.pseudo_class_prior(pseudo, a_all[unseen_idx]))
        else:
            self.unseen_prior.fill_(1.0 / len(c.unseen_classes))

        # 3) Adversarial training with a fixed number of epochs.
        gen_params = list(self.encoder.parameters()) + list(self.generator.parameters())
        opt_g = torch.optim.Adam(gen_params, lr=c.lr, betas=(0.5, 0.999))
        critics = [self.critic_seen] + ([self.critic_unseen] if transductive else [])
        opt_d = torch.optim.Adam([p for m in critics for p in m.parameters()], lr=c.lr, betas=(0.5, 0.999))
        opt_fb = torch.optim.Adam(self.feedback.parameters(), lr=c.feedback_lr, betas=(0.5, 0.999)) if self.feedback is not None else None
        steps = c.steps_per_epoch or max(1, n // c.batch_size)
        B, fb_w = c.batch_size, c.feedback_train_weight
        bar = progress_bar(total=c.epochs * steps, desc="tzsl", main_process=is_main, disable=not progress)
        self.train()
        for epoch in range(c.epochs):
            sums = {"critic_seen": 0.0, "critic_unseen": 0.0, "vae": 0.0, "decoder": 0.0, "generator": 0.0}
            for _ in range(steps):
                # -- critics (and the decoder on real seen pairs), critic_iters times
                for _ in range(c.critic_iters):
                    b = torch.randint(0, n, (B,), device=device)
                    xs, as_ = x_s[b], a_all[y_s[b]]
                    with torch.no_grad():
                        fake_s = self.generator(torch.randn(B, c.latent_dim, device=device), as_)
                    d1 = lambda x, a=as_: self.critic_seen(x, a)  # noqa: E731
                    loss_d = Fz.wgan_critic_loss(d1(xs), d1(fake_s)) + Fz.gradient_penalty(d1, xs, fake_s, c.gp_weight)
                    sums["critic_seen"] += loss_d.item() / c.critic_iters
                    if transductive:
                        xu, cond, fake_u = self._unseen_batch(x_u, unseen_idx, B, device)
                        d2 = (lambda x, a=cond: self.critic_unseen(x, a)) if c.conditional_d2 else self.critic_unseen
                        loss_d2 = Fz.wgan_critic_loss(d2(xu), d2(fake_u.detach())) + Fz.gradient_penalty(d2, xu, fake_u, c.gp_weight)
                        loss_d = loss_d + loss_d2
                        sums["critic_unseen"] += loss_d2.item() / c.critic_iters
                    opt_d.zero_grad(set_to_none=True)
                    (c.gan_weight * loss_d).backward()
                    opt_d.step()
                    # The decoder keeps learning from real seen pairs.
                    loss_dec = c.decoder_weight * Fz.weighted_l1(self.decoder(xs)[0], as_)
                    opt_dec.zero_grad(set_to_none=True)
                    loss_dec.backward()
                    opt_dec.step()
                    sums["decoder"] += loss_dec.item() / c.critic_iters

                # -- generator (+ encoder, + feedback) step
                for m in critics:
                    m.requires_grad_(False)
                b = torch.randint(0, n, (B,), device=device)
                xs, as_ = x_s[b], a_all[y_s[b]]
                mu, logvar = self.encoder(xs, as_)
                z = Fz.reparameterize(mu, logvar)
                recon = self._generate(z, as_, fb_w)
                loss_vae = Fz.vae_loss(recon, xs, mu, logvar)
                # Adversarial term on features generated from the encoded noise.
                loss_g = -self.critic_seen(recon, as_).mean()
                loss_rec = Fz.weighted_l1(self.decoder(recon)[0], as_)
                if transductive:
                    _, cond, fake_u = self._unseen_batch(x_u, unseen_idx, B, device, feedback_weight=fb_w)
                    score_u = self.critic_unseen(fake_u, cond) if c.conditional_d2 else self.critic_unseen(fake_u)
                    loss_g = loss_g - score_u.mean()
                    if c.conditional_d2:
                        loss_rec = loss_rec + Fz.weighted_l1(self.decoder(fake_u)[0], cond)
                loss = loss_vae + c.gan_weight * loss_g + c.decoder_weight * loss_rec
                opt_g.zero_grad(set_to_none=True)
                opt_dec.zero_grad(set_to_none=True)  # the decoder only judges here
                if opt_fb is not None:
                    opt_fb.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                if opt_fb is not None:
                    opt_fb.step()
                for m in critics:
                    m.requires_grad_(True)
                sums["vae"] += loss_vae.item()
                sums["generator"] += loss_g.item()
                bar.update(1)
            record = {k: v / steps for k, v in sums.items()}
            history["epochs"].append(record)
            log({f"train/{k}": v for k, v in record.items()}, epoch)
            bar.set_postfix(vae=f"{record['vae']:.1f}", d1=f"{record['critic_seen']:.2f}")
        bar.close()

        # 4) Final classifiers on synthetic unseen (+ real seen) features.
        self.eval()
        history["classifier"] = self._fit_classifiers(x_s, y_s, unseen_idx, device, seed)
        self.train(False)
        return history

    def _unseen_batch(self, x_u, unseen_idx, B, device, feedback_weight: float = 0.0):
        """A batch of unlabelled unseen features, the condition for D2 and fake features.

        Conditional D2 (paper): the condition is the decoder's pseudo-attributes of the
        real batch and the fakes are generated from it. Unconditional D2 (f-VAEGAN-D2):
        fakes come from unseen-class attributes drawn from the (label-free) prior.
        """
        xu = x_u[torch.randint(0, x_u.shape[0], (B,), device=device)]
        if self.config.conditional_d2:
            with torch.no_grad():
                cond = self.decoder(xu)[0]
        else:
            cls = unseen_idx[torch.multinomial(self.unseen_prior, B, replacement=True)]
            cond = self.class_attributes[cls]
        z = torch.randn(B, self.config.latent_dim, device=device)
        return xu, cond, self._generate(z, cond, feedback_weight)

    def _fit_classifiers(self, x_s, y_s, unseen_idx, device, seed) -> dict:
        c = self.config
        g = torch.Generator(device="cpu").manual_seed(seed)
        counts = torch.distributions.Multinomial(c.syn_num * len(unseen_idx), probs=self.unseen_prior.cpu()).sample() if c.unseen_prior == "pseudo" else None
        with torch.no_grad():
            per_class = counts.long().clamp_min(1).tolist() if counts is not None else [c.syn_num] * len(unseen_idx)
            y_syn = torch.cat([torch.full((k,), int(u), device=device) for k, u in zip(per_class, unseen_idx.tolist())])
            x_syn = self.generate(self.class_attributes[y_syn])
            enc = lambda x: torch.cat([self.classifier_input(x[i : i + 4096])[0] for i in range(0, x.shape[0], 4096)])  # noqa: E731
            f_syn, f_seen = enc(x_syn), enc(x_s)
        to_local = torch.full((c.num_classes,), -1, dtype=torch.long, device=device)
        to_local[unseen_idx] = torch.arange(len(unseen_idx), device=device)
        zsl_loss = self._train_head(self.zsl_head, f_syn, to_local[y_syn], g)
        gzsl_loss = self._train_head(self.gzsl_head, torch.cat([f_seen, f_syn]), torch.cat([y_s, y_syn]), g)
        return {"zsl_loss": zsl_loss, "gzsl_loss": gzsl_loss, "synthetic_per_class": per_class}

    def _train_head(self, head: nn.Linear, feats, labels, g) -> float:
        c = self.config
        with torch.no_grad():
            init.normal_(head.weight, std=0.02)
            init.zeros_(head.bias)
        opt = torch.optim.Adam(head.parameters(), lr=c.cls_lr, betas=(0.5, 0.999))
        n, loss = feats.shape[0], torch.tensor(float("nan"))
        for _ in range(c.cls_epochs):
            perm = torch.randperm(n, generator=g).to(feats.device)
            for i in range(0, n, c.cls_batch_size):
                b = perm[i : i + c.cls_batch_size]
                loss = F.cross_entropy(head(feats[b]), labels[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return float(loss.item())

    # ------------------------------------------------------------------ hub
    def card_vars(self) -> dict:
        c = self.config
        names = c.class_names or [str(i) for i in range(c.num_classes)]
        return dict(config=c, seen_names=[names[i] for i in (c.seen_classes or [])],
                    unseen_names=[names[i] for i in (c.unseen_classes or [])])  # fmt: skip

    def create_model_card(self, **kwargs):
        kwargs.setdefault("model_name", f"tzsl-{self.config.preset or 'custom'}-{self.config.mode}")
        return super().create_model_card(**kwargs)


register_auto(TZSLConfig, TZSLModel, image_classification=False)
