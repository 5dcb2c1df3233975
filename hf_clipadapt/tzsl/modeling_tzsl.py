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
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..configuration_utils import DEFAULT_SEED
from ..metrics import gzsl_scores, per_class_accuracy
from ..modeling_utils import AdaptedPreTrainedModel, register_auto
from . import functional as Fz
from .configuration_tzsl import TZSLConfig
from .data import ZSLData, check_split
from .networks import TZSLAttributeDecoder, TZSLCritic, TZSLEncoder, TZSLFeedback, TZSLGenerator
from .training import TZSLGANTrainer, adam_arguments, pretrain_decoder, train_head, training_device


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
        self.feedback = TZSLFeedback(c) if c.feedback else None
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
    def from_data(cls, data: ZSLData, preset: str = "fast", **overrides) -> TZSLModel:
        """A fresh model sized for `data` from a preset ("fast", "cub", "awa2", "sun", "flo")."""
        cfg = TZSLConfig.from_preset(
            preset,
            feature_dim=data.feature_dim,
            attribute_dim=data.attributes.shape[1],
            num_classes=data.num_classes,
            seen_classes=data.seen_classes,
            unseen_classes=data.unseen_classes,
            class_names=data.class_names,
            **overrides,
        )
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
        return self._generate(
            z, attributes, self.config.feedback_eval_weight if feedback_weight is None else feedback_weight
        )

    def _generate(self, z, a, feedback_weight: float):
        x = self.generator(z, a)
        if self.feedback is None or feedback_weight == 0:
            return x
        # Feedback loop: the decoder's hidden view of a first sample refines the generator's hidden
        # layer. The hidden is detached, as `getLayersOutDet` does in the reference code
        # (mrflogs/icassp23, model.py, lines 97-99, used in train.py, e.g. lines 185-188), so the
        # feedback trains F and the second generator pass, never the decoder or the first pass.
        _, hidden = self.decoder(x)
        return self.generator(z, a, feedback=feedback_weight * self.feedback(hidden.detach()))

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
        out = torch.cat(
            [
                self(features[i : i + batch_size], task=task).logits.cpu()
                for i in range(0, features.shape[0], batch_size)
            ]
        )
        self.train(was_training)
        return out

    extra_metrics = ("zsl_accuracy",)

    def compute_metrics(self, data: ZSLData, *, split: str = "test") -> dict:
        """ZSL accuracy (`zsl_accuracy`: unseen test, unseen classes only) and GZSL
        `unseen_accuracy` / `seen_accuracy` / `h_score`, per-class mean top-1 in %;
        `evaluate(data, record_as="<dataset name>")` stores them for the model card."""
        if data.test_unseen_labels.lt(0).any():
            raise ValueError("evaluate needs test-unseen labels; they are -1 (unknown) in this data")
        zsl = per_class_accuracy(
            self.predict_logits(data.test_unseen_features, "zsl"), data.test_unseen_labels, data.unseen_classes
        )
        feats = torch.cat([data.test_seen_features, data.test_unseen_features])
        labels = torch.cat([data.test_seen_labels, data.test_unseen_labels])
        g = gzsl_scores(self.predict_logits(feats, "gzsl"), labels, data.seen_classes, data.unseen_classes)
        return {"zsl_accuracy": zsl, "unseen_accuracy": g["unseen"], "seen_accuracy": g["seen"], "h_score": g["H"]}

    # ------------------------------------------------------------------ training
    def _check_data(self, data: ZSLData) -> None:
        c = self.config
        if data.feature_dim != c.feature_dim:
            raise ValueError(
                f"data has features of width {data.feature_dim} but the model was built for {c.feature_dim}"
            )
        if tuple(data.attributes.shape) != (c.num_classes, c.attribute_dim):
            raise ValueError(
                f"data.attributes is {tuple(data.attributes.shape)} but the model expects "
                f"[num_classes={c.num_classes}, attribute_dim={c.attribute_dim}]"
            )
        check_split(data.attributes, data.seen_classes, data.unseen_classes)
        if not c.unseen_classes:
            raise ValueError(
                "the config does not name its unseen classes: build the model with TZSLModel.from_data(data, preset)"
            )
        if c.unseen_classes and list(c.unseen_classes) != list(data.unseen_classes):
            raise ValueError(
                f"the model was built for unseen classes {c.unseen_classes}, data has {data.unseen_classes}"
            )

    def fit(
        self,
        train: ZSLData,
        validation=None,
        *,
        seed: int = DEFAULT_SEED,
        args: dict | None = None,
        resume_from_checkpoint=None,
        unlabelled_features: torch.Tensor | None = None,
        accelerator=None,
        progress: bool = True,
        dataset_name: str | None = None,
    ) -> TZSLModel:
        """Train the decoder, the generator and critics, then both classifiers; returns self,
        the run's history (per phase) in `history_`, its `TZSLTrainingArguments` in `training_args_`.

        Args:
            train: a `ZSLData`. Uses `train.train_*` (labelled seen) and, in transductive mode,
                the unlabelled pool `unlabelled_features` (default: `train.test_unseen_features`,
                whose labels are never read, the standard transductive protocol). Pass the whole
                test set (seen + unseen, unlabelled) for the stricter setting.
            validation: accepted for the shared signature and left unread: TZSL trains for a
                fixed number of epochs and chooses nothing (use `pseudo_unseen_split` to choose).
            seed: seeds the initial draws, the batches and the synthetic features.
            args: a `TZSLTrainingArguments` (used as it is) or a dict of overrides of the
                training settings: those of the preset the model was built from
                (`TZSLTrainingArguments.from_preset(config.preset)`), else the class defaults.
            resume_from_checkpoint: not supported (three phases on in-memory features); must be None.
            accelerator: if given, receives the per-epoch losses through `accelerator.log`.
            progress: show progress bars (main process).
            dataset_name: recorded for the model card.

        Every phase runs on the shared training path (see `hf_clipadapt.tzsl.training`),
        under DDP when the script is started with `accelerate launch`.
        """
        if resume_from_checkpoint is not None:
            raise ValueError(
                "TZSL cannot resume a run: its three phases train on in-memory features in minutes; "
                "call fit again without resume_from_checkpoint"
            )
        settings = self.training_args_ = self.training_arguments(seed, args)
        self.history_ = self._fit(train, unlabelled_features, seed, accelerator, progress, settings)
        self.record_provenance(seed=seed, dataset_name=dataset_name, num_train_images=len(train.train_labels))
        return self

    def training_arguments(self, seed: int = DEFAULT_SEED, args=None):
        """The run's `TZSLTrainingArguments` (`hf_clipadapt.tzsl.arguments.resolve_tzsl_arguments`)."""
        from .arguments import resolve_tzsl_arguments

        return resolve_tzsl_arguments(self.config, seed, args)

    def _fit(self, data: ZSLData, unlabelled_features, seed: int, accelerator, progress: bool, settings) -> dict:
        """The three phases; returns their history."""
        self._check_data(data)
        device = training_device()
        self.to(device)
        torch.manual_seed(seed)
        x_s, y_s, x_u, unseen_idx = self._prepare_training(data, unlabelled_features, device)
        history = {}
        history["decoder_pretrain"], opt_dec = pretrain_decoder(
            self, x_s, self.class_attributes[y_s], settings=settings, seed=seed, progress=progress
        )
        self._fit_unseen_prior(x_u, unseen_idx)
        args = adam_arguments(
            epochs=settings.num_train_epochs,
            batch_size=settings.batch_size,
            lr=settings.learning_rate,
            seed=seed,
            progress=progress,
        )
        gan = TZSLGANTrainer(
            self,
            args,
            settings=settings,
            x_s=x_s,
            y_s=y_s,
            x_u=x_u,
            unseen_idx=unseen_idx,
            decoder_optimizer=opt_dec,
            accelerator=accelerator,
        )
        self.train()
        gan.train()
        history["epochs"] = gan.history
        self.eval()
        history["classifier"] = self._fit_classifiers(x_s, y_s, unseen_idx, seed, progress, settings)
        self.eval()
        return history

    def _prepare_training(self, data: ZSLData, unlabelled_features, device):
        """Fit the scaling (seen-train only) and the class attributes; return the scaled
        seen features and labels, the scaled unlabelled pool (None if inductive), the unseen ids."""
        c = self.config
        c.seen_classes, c.unseen_classes = list(data.seen_classes), list(data.unseen_classes)
        if data.class_names is not None:
            c.class_names = list(data.class_names)
        lo, hi = Fz.minmax_fit(data.train_features)
        self.feature_min.copy_(lo.to(device))
        self.feature_max.copy_(hi.to(device))
        att = data.attributes.float().to(device)
        self.class_attributes.copy_(Fz.normalize_attributes(att) if c.normalize_attributes else att)
        x_s, y_s = self.scale(data.train_features.to(device)), data.train_labels.to(device)
        x_u = None
        if c.mode == "transductive":
            pool = data.test_unseen_features if unlabelled_features is None else unlabelled_features
            if len(pool) == 0:
                raise ValueError(
                    "transductive mode trains its second critic on unlabelled unseen-class features, and the pool is "
                    "empty ("
                    + (
                        "data.test_unseen_features has 0 rows"
                        if unlabelled_features is None
                        else "unlabelled_features has 0 rows"
                    )
                    + "): give it unlabelled features, or use mode='inductive'"
                )
            self._check_features(pool)
            x_u = self.scale(pool.to(device))
        return x_s, y_s, x_u, torch.tensor(c.unseen_classes, device=device)

    @torch.no_grad()
    def _fit_unseen_prior(self, x_u, unseen_idx) -> None:
        """The label-free unseen prior: uniform unless asked for the decoder's estimate."""
        if x_u is not None and self.config.unseen_prior == "pseudo":
            pseudo = torch.cat([self.decoder(x_u[i : i + 4096])[0] for i in range(0, x_u.shape[0], 4096)])
            self.unseen_prior.copy_(Fz.pseudo_class_prior(pseudo, self.class_attributes[unseen_idx]))
        else:
            self.unseen_prior.fill_(1.0 / len(self.config.unseen_classes))

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

    def _fit_classifiers(self, x_s, y_s, unseen_idx, seed: int, progress: bool, settings) -> dict:
        """ZSL head on synthetic unseen features, GZSL head on real seen + synthetic unseen ones.
        The synthetic set is drawn from its own generator, so every process builds the same one."""
        c, device = self.config, x_s.device
        g = torch.Generator().manual_seed(seed)
        per_class = [settings.syn_num] * len(unseen_idx)
        if c.unseen_prior == "pseudo":
            draws = torch.multinomial(self.unseen_prior.cpu(), settings.syn_num * len(unseen_idx), True, generator=g)
            per_class = torch.bincount(draws, minlength=len(unseen_idx)).clamp_min(1).tolist()
        with torch.no_grad():
            y_syn = torch.cat(
                [torch.full((k,), int(u), device=device) for k, u in zip(per_class, unseen_idx.tolist())]
            )
            z = torch.randn(len(y_syn), c.latent_dim, generator=g).to(device)
            x_syn = self._generate(z, self.class_attributes[y_syn], c.feedback_eval_weight)
            enc = lambda x: torch.cat([self.classifier_input(x[i : i + 4096])[0] for i in range(0, x.shape[0], 4096)])  # noqa: E731
            f_syn, f_seen = enc(x_syn), enc(x_s)
        to_local = torch.full((c.num_classes,), -1, dtype=torch.long, device=device)
        to_local[unseen_idx] = torch.arange(len(unseen_idx), device=device)
        losses = {}
        for name, head, feats, labels in (
            ("zsl_loss", self.zsl_head, f_syn, to_local[y_syn]),
            ("gzsl_loss", self.gzsl_head, torch.cat([f_seen, f_syn]), torch.cat([y_s, y_syn])),
        ):
            with torch.no_grad():
                head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.02)
                head.bias.zero_()
            losses[name] = train_head(head, feats, labels, settings=settings, seed=seed, progress=progress)
        return {**losses, "synthetic_per_class": per_class}

    # ------------------------------------------------------------------ hub
    def card_vars(self) -> dict:
        c = self.config
        names = c.class_names or [str(i) for i in range(c.num_classes)]
        settings = getattr(self, "training_args_", None)
        return dict(
            config=c,
            epochs=settings.num_train_epochs if settings is not None else "preset",
            seen_names=[names[i] for i in (c.seen_classes or [])],
            unseen_names=[names[i] for i in (c.unseen_classes or [])],
        )

    def create_model_card(self, **kwargs):
        kwargs.setdefault("model_name", f"tzsl-{self.config.preset or 'custom'}-{self.config.mode}")
        return super().create_model_card(**kwargs)


register_auto(TZSLConfig, TZSLModel, image_classification=False)
