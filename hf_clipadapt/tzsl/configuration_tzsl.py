"""Configuration of the transductive ZSL model (VAE-GAN feature generator + attribute decoder)."""

from __future__ import annotations

import warnings

from ..configuration_utils import AdaptedConfig, check_sizes, lookup_preset

# Published hyper-parameters of the TF-VAEGAN image scripts, on which the ICASSP 2023
# method builds (ResNet-101 2048-d features, 4096 hidden units everywhere).
# gan_weight = gammaD = gammaG, feedback_train/eval_weight = a1/a2, decoder_weight =
# recons_weight, syn_num = synthetic features per unseen class. The paper gives no
# separate weight for the second critic: we use the same weight as for the first. The final
# classifiers train 25 epochs with batches of syn_num (train_images.py, lines 273-274). The per-dataset
# switches come from the same scripts (akshitac8/tfvaegan, scripts/run_*_tfvaegan.py): AWA2 freezes
# the decoder in the generator step (--freeze_dec), FLO draws critic fakes from N(0, I) (no --encoded_noise).
PRESETS: dict[str, dict] = {
    "cub": dict(
        epochs=300,
        lr=1e-4,
        cls_lr=1e-3,
        decoder_lr=1e-4,
        feedback_lr=1e-5,
        gan_weight=10.0,
        decoder_weight=0.01,
        feedback_train_weight=1.0,
        feedback_eval_weight=1.0,
        syn_num=300,
        cls_batch_size=300,
    ),
    "awa2": dict(
        epochs=120,
        lr=1e-5,
        cls_lr=1e-3,
        decoder_lr=1e-4,
        feedback_lr=1e-4,
        gan_weight=10.0,
        decoder_weight=0.1,
        feedback_train_weight=0.01,
        feedback_eval_weight=0.01,
        syn_num=1800,
        cls_batch_size=1800,
        freeze_decoder=True,
    ),
    "sun": dict(
        epochs=400,
        lr=1e-3,
        cls_lr=5e-4,
        decoder_lr=1e-4,
        feedback_lr=1e-4,
        gan_weight=1.0,
        decoder_weight=0.01,
        feedback_train_weight=0.1,
        feedback_eval_weight=0.01,
        syn_num=400,
        cls_batch_size=400,
    ),
    "flo": dict(
        epochs=500,
        lr=1e-4,
        cls_lr=1e-3,
        decoder_lr=1e-4,
        feedback_lr=1e-5,
        gan_weight=10.0,
        decoder_weight=0.01,
        feedback_train_weight=0.5,
        feedback_eval_weight=0.5,
        syn_num=1200,
        cls_batch_size=1200,
        encoded_noise=False,
    ),
    # Small networks and few steps: minutes on one CPU core for ~15k features of width 256.
    # lr and syn_num were chosen on a pseudo-unseen split of Fashion-MNIST's seen classes
    # (never on test data): lr 1e-3 + 1500 per class gave validation H 10.6 vs 0.0.
    # No feedback module, so one pass per epoch (a second pass would only double the steps).
    "fast": dict(
        epochs=4,
        hidden_dim=512,
        decoder_hidden_dim=256,
        lr=1e-3,
        cls_lr=1e-3,
        decoder_lr=1e-3,
        gan_weight=1.0,
        decoder_weight=0.1,
        feedback=False,
        feedback_passes=1,
        syn_num=1500,
        steps_per_epoch=200,
        decoder_pretrain_epochs=5,
        cls_epochs=15,
    ),
}

# The keys above (old TZSLConfig fields) that are training settings, now `TZSLTrainingArguments`
# fields (hf_clipadapt.tzsl.arguments); two changed their names there.
RENAMED = {"epochs": "num_train_epochs", "lr": "learning_rate"}
TRAINING_KEYS = (
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "critic_iters",
    "gp_weight",
    "adaptive_gp",
    "gan_weight",
    "decoder_weight",
    "lr",
    "decoder_lr",
    "feedback_lr",
    "feedback_train_weight",
    "decoder_pretrain_epochs",
    "syn_num",
    "cls_lr",
    "cls_epochs",
    "cls_batch_size",
)


def training_part(settings: dict) -> dict:
    """The training settings among old-style config settings, under their new names."""
    return {RENAMED.get(k, k): v for k, v in settings.items() if k in TRAINING_KEYS}


def _pop_training_keys(kwargs: dict) -> dict:
    """Take training settings out of a config's keywords (an old config.json, or old-style
    keywords) with a FutureWarning naming their new place; returns them under the new names."""
    old = {k: kwargs.pop(k) for k in TRAINING_KEYS if k in kwargs}
    if old:
        warnings.warn(
            f"TZSLConfig no longer holds training settings ({', '.join(sorted(old))}): since issue 26 they "
            "are fields of hf_clipadapt.tzsl.TZSLTrainingArguments (epochs -> num_train_epochs, lr -> "
            "learning_rate), passed as TZSLModel.fit(args=...). This config's values are used as fit's "
            "defaults (under args) and are not saved again.",
            FutureWarning,
            stacklevel=3,
        )
    return training_part(old)


def _check_settings(mode: str, unseen_prior: str, counts: dict, sizes: dict) -> None:
    """Refuse an unknown mode or prior, a count below 1, and sizes (then the networks' rough
    parameter count) beyond the limits, before anything is allocated."""
    if mode not in ("transductive", "inductive"):
        raise ValueError(f"mode must be 'transductive' or 'inductive', got {mode!r}")
    if unseen_prior not in ("uniform", "pseudo"):
        raise ValueError(f"unseen_prior must be 'uniform' or 'pseudo' (label-free), got {unseen_prior!r}")
    for name, v in counts.items():
        if int(v) < 1:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    check_sizes("TZSLConfig", sizes)
    s = sizes
    inputs = s["feature_dim"] + s["attribute_dim"] + (s["latent_dim"] or s["attribute_dim"])
    check_sizes(
        "TZSLConfig",
        sizes,
        parameters=4 * s["hidden_dim"] * inputs
        + 2 * s["decoder_hidden_dim"] * inputs
        + s["feature_dim"] * s["num_classes"],
    )


class TZSLConfig(AdaptedConfig):
    r"""Configuration of [`TZSLModel`].

    Args:
        feature_dim: width of the visual features (2048 for xlsa17 ResNet-101).
        attribute_dim: width of the class semantic vectors (attributes or text embeddings).
        num_classes: number of classes (rows of the attribute matrix).
        latent_dim: noise width; `None` means `attribute_dim`, as in the reference setup.
        hidden_dim: hidden units of encoder, generator and critics (4096 in the paper).
        decoder_hidden_dim: hidden units of the attribute decoder (4096 in the paper).
        mode: "transductive" (critic D2 on unlabelled unseen features) or "inductive" (no D2).
        conditional_d2: True = D2(x_u, Dec(x_u)), the paper's contribution; False = an
            unconditional D2(x) as in f-VAEGAN-D2 (ablation).
        unseen_prior: how unseen-class conditions are drawn when attributes of unseen
            classes are sampled (unconditional D2 and classifier synthesis): "uniform",
            or "pseudo" = a label-free estimate from decoded attributes of the unlabelled data.
        feedback: use the feedback module (decoder hidden, detached -> generator hidden).
        feedback_eval_weight: a2, the feedback's weight when features are generated.
        feedback_passes: passes over the seen data per epoch (`feedback_loop`, 2); the feedback
            is used and trained only after the first (TF-VAEGAN's `if loop == 1`).
        encoded_noise: the critic's seen fakes come from the encoder's code of the real batch
            (TF-VAEGAN's --encoded_noise, used on CUB, SUN, AWA2); False = z ~ N(0, I).
        freeze_decoder: False (TF-VAEGAN's default) = the decoder also steps on the generator
            loss; True = only on real seen pairs (--freeze_dec, the AWA2 script).
        seen_classes / unseen_classes: filled in by `fit`.
        preset: the named preset the model was built from; `fit` starts from its training
            settings (`TZSLTrainingArguments.from_preset`).

    Training settings (epochs, learning rates, batch sizes, loss weights, `syn_num`, ...) are
    `TZSLTrainingArguments` fields, given to `fit(args=...)`; a config that still carries them
    (an old config.json) loads with a FutureWarning and `fit` uses its values under `args`.
    """

    model_type = "tzsl"

    def __init__(
        self,
        feature_dim: int = 2048,
        attribute_dim: int = 85,
        num_classes: int = 50,
        latent_dim: int | None = None,
        hidden_dim: int = 4096,
        decoder_hidden_dim: int = 4096,
        mode: str = "transductive",
        conditional_d2: bool = True,
        unseen_prior: str = "uniform",
        feedback: bool = True,
        feedback_eval_weight: float = 1.0,
        normalize_attributes: bool = True,
        feedback_passes: int = 2,
        encoded_noise: bool = True,
        freeze_decoder: bool = False,
        seen_classes: list[int] | None = None,
        unseen_classes: list[int] | None = None,
        class_names: list[str] | None = None,
        preset: str | None = None,
        **kwargs,
    ):
        self._legacy_training = _pop_training_keys(kwargs)
        _check_settings(
            mode,
            unseen_prior,
            dict(feedback_passes=feedback_passes),
            dict(
                feature_dim=feature_dim,
                attribute_dim=attribute_dim,
                num_classes=num_classes,
                latent_dim=latent_dim,
                hidden_dim=hidden_dim,
                decoder_hidden_dim=decoder_hidden_dim,
            ),
        )
        self.feature_dim, self.attribute_dim, self.num_classes = feature_dim, attribute_dim, num_classes
        self.latent_dim = attribute_dim if latent_dim is None else latent_dim
        self.hidden_dim, self.decoder_hidden_dim = hidden_dim, decoder_hidden_dim
        self.mode, self.conditional_d2, self.unseen_prior = mode, conditional_d2, unseen_prior
        self.feedback, self.feedback_eval_weight = feedback, feedback_eval_weight
        self.normalize_attributes = normalize_attributes
        self.feedback_passes, self.encoded_noise, self.freeze_decoder = feedback_passes, encoded_noise, freeze_decoder
        self.seen_classes, self.unseen_classes, self.class_names = seen_classes, unseen_classes, class_names
        self.preset = preset
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> TZSLConfig:
        """A config from a published preset ("cub", "awa2", "sun", "flo") or "fast" (CPU),
        with any field overridden (feature_dim, attribute_dim, num_classes, mode, ...). The
        preset's training settings are `TZSLTrainingArguments.from_preset(name)`, which `fit`
        starts from (the config records the name)."""
        key, settings = lookup_preset(PRESETS, name, cls.__name__)
        settings = {k: v for k, v in settings.items() if k not in TRAINING_KEYS}
        return cls(**{**settings, "preset": key, **overrides})

    def to_dict(self):
        out = super().to_dict()
        out.pop("_legacy_training", None)  # training settings: TZSLTrainingArguments, not written again
        return out
