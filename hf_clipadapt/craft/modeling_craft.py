"""`CraFTForImageClassification`: a black-box VLM adapted by CraFT (Wang et al., ICML 2024), as a transformers model.

The model holds what the user owns and nothing else: z (the CMA-ES mean, d0 floats),
the seed of the projection A, the refinement module R (K→hidden→K) and the address
of the black box. `forward` sends the images to the black box, queries it once with
the learned prompt p0 + A·z, and refines the scores: logits = Y_I + R(Y_I). A saved
model is a few hundred kilobytes at most; the VLM is never on the user side.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from transformers.modeling_outputs import ImageClassifierOutput

from ..configuration_utils import DEFAULT_SEED
from ..data.labels import check_class_names
from ..modeling_utils import AdaptedPreTrainedModel, register_auto
from .configuration_craft import CraFTConfig, _is_url
from .prompt import PromptModule
from .refine import RefinementModule

TOKEN_ENV = "HF_CLIPADAPT_BLACK_BOX_TOKEN"  # the bearer token of a served black box, never saved
# The one served address the token in TOKEN_ENV may be sent to when a *saved* address is
# reconnected (`from_pretrained(..., connect=True)`); set by the user next to the token.
URL_ENV = "HF_CLIPADAPT_BLACK_BOX_URL"


def connect_black_box(ref: str, token: str | None = None, **kwargs):
    """A black box from its address: an http(s) URL (`RemoteBlackBox`, token from `token=` or
    the HF_CLIPADAPT_BLACK_BOX_TOKEN variable) or a CLIP name/alias/folder (`LocalBlackBox`)."""
    if not ref:
        raise OSError("this CraFT model names no black box; pass black_box=LocalBlackBox(...) or RemoteBlackBox(...)")
    if _is_url(ref):
        from .client import RemoteBlackBox

        return RemoteBlackBox(ref, token=token or os.environ.get(TOKEN_ENV), **kwargs)
    from .local import LocalBlackBox

    try:
        return LocalBlackBox(ref, **kwargs)
    except (OSError, ValueError) as e:
        raise OSError(
            f"could not load the black box {ref!r} this CraFT model was trained against ({e}); pass "
            "black_box=... to from_pretrained"
        ) from e


def _confirmed_url(saved: str) -> str:
    """The saved URL, if the user confirmed it in $HF_CLIPADAPT_BLACK_BOX_URL; else a refusal."""
    confirmed = os.environ.get(URL_ENV, "").strip().rstrip("/")
    if not confirmed or confirmed != saved.rstrip("/"):
        raise PermissionError(
            f"this CraFT model was trained against the served black box {saved!r}, and a loaded folder never decides "
            f"where your token goes: set {URL_ENV}={saved} beside {TOKEN_ENV} to confirm it, or pass "
            "black_box=RemoteBlackBox(url, token=...) yourself."
        )
    return saved


class CraFTForImageClassification(AdaptedPreTrainedModel):
    """logits = Y_I + R(Y_I), Y_I the black box's scores for the prompt "[p0 + A·z] {class}."."""

    config_class = CraFTConfig
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    card_template = "craft.md"
    card_tags = ("craft", "black-box", "prompt-learning", "cma-es", "clip", "few-shot")
    _unfitted_behaviour = "those of the black box prompted with the initial phrase (R starts at zero)"

    def __init__(self, config: CraFTConfig, black_box=None):
        super().__init__(config)
        self.prompt = PromptModule(
            config.n_ctx, config.text_width, config.intrinsic_dim, config.projection_seed, config.projection_std
        )
        self.refiner = RefinementModule(config.num_labels, config.refine_hidden)
        self.black_box = None
        self.post_init()
        if black_box is not None:
            self.connect(black_box)

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, RefinementModule):
            module.reset_parameters()  # R = 0 at the start: the model is the black box
        elif isinstance(module, PromptModule):
            module.z.zero_()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_black_box(cls, black_box, class_names, *, ctx_init: str = "a photo of a", **config_kwargs):
        """A fresh model (z = 0, R = 0) for `class_names` against `black_box` (a `BlackBoxVLM` or an address)."""
        from ..clip.backbone import check_classnames

        names = check_classnames(class_names)  # [] used to reach a ZeroDivisionError; "cat" to make 3 classes
        box = connect_black_box(black_box) if isinstance(black_box, str) else black_box
        p0 = box.context_embeddings(ctx_init)
        config = CraFTConfig(
            black_box=box.name,
            ctx_init=ctx_init,
            n_ctx=int(p0.shape[0]),
            text_width=int(p0.shape[1]),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            is_fitted=False,
            **config_kwargs,
        )
        return cls(config, black_box=box).eval()

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *args,
        black_box=None,
        connect: bool = False,
        token: str | None = None,
        **kwargs,
    ):
        """Load z and R, then attach a black box, never contacting a served one on the
        folder's say-so (SECURITY.md, "Loading"):

        * `black_box=`: a `BlackBoxVLM`, or an address you give here (a served URL gets
          `token=` or $HF_CLIPADAPT_BLACK_BOX_TOKEN);
        * a saved address that is a CLIP name, alias or folder (`LocalBlackBox`): loaded
          in this process, like any base model;
        * a saved http(s) URL: not contacted. The model loads unconnected (it can be
          saved, inspected, `connect`ed later); `connect=True` connects to it only if it
          is the URL in $HF_CLIPADAPT_BLACK_BOX_URL, set by you beside the token.
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        saved = model.config.black_box
        if black_box is not None:
            model.connect(connect_black_box(black_box, token) if isinstance(black_box, str) else black_box)
        elif _is_url(saved):
            if connect:
                model.connect(connect_black_box(_confirmed_url(saved), token))
        elif saved or connect:
            model.connect(connect_black_box(saved, token))
        return model.eval()

    def connect(self, black_box) -> None:
        """Attach a black box (fetches p0 from it; it must embed the same prompt width)."""
        if black_box.text_width != self.config.text_width:
            raise ValueError(
                f"the black box has text width {black_box.text_width}, this CraFT model was trained "
                f"against one of width {self.config.text_width}: connect the black box it was trained on"
            )
        self.prompt.attach(black_box, self.config.ctx_init)
        self.black_box = black_box

    def require_black_box(self):
        if self.black_box is None:
            saved = self.config.black_box
            hint = (
                (
                    f"; it was trained against {saved!r}: connect with model.connect(RemoteBlackBox({saved!r}, "
                    f"token=...)), or load with from_pretrained(..., connect=True) after setting {URL_ENV} to that "
                    f"URL beside {TOKEN_ENV}"
                )
                if _is_url(saved)
                else ""
            )
            raise ValueError(
                "this CraFT model has no black box connected; call connect(black_box) first, or load "
                f"it with from_pretrained(..., black_box=...){hint}"
            )
        return self.black_box

    @property
    def image_processor(self):
        """The black box's image processor where it exposes one (a local one does)."""
        return getattr(self.black_box, "image_processor", None)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train,
        validation=None,
        *,
        shots: int | None = None,
        seed: int = DEFAULT_SEED,
        args=None,
        resume_from_checkpoint=None,
        image_processor=None,
        image_column: str = "image",
        label_column: str = "label",
        dataset_name: str | None = None,
    ):
        """Run CraFT's collaborative loop on the labelled shots of `train` (a `datasets.Dataset`;
        with `shots=K` the CoOp K-shot draw is taken from it); returns self, the run's
        history in `history_`. `args`: `CraFTTrainingArguments` or a dict of overrides
        (budget, population, sigma, ...). CraFT chooses nothing on `validation`: it is
        accepted for the shared signature and left unread."""
        from ..data.few_shot import train_validation_split
        from ..features import check_columns
        from .arguments import CraFTTrainingArguments

        check_columns(train, image_column=image_column, label_column=label_column)
        train, _ = train_validation_split(train, validation, shots=shots, seed=seed, label_column=label_column)
        check_class_names(train, label_column, self.class_names())
        if not isinstance(args, CraFTTrainingArguments):
            from ..training.arguments import check_overrides

            args = CraFTTrainingArguments(**{"seed": seed, **check_overrides(args, CraFTTrainingArguments)})
        x = self.pixel_values(train, image_processor, image_column)
        return self.fit_pixels(
            x,
            torch.as_tensor(train[label_column]),
            args,
            resume_from_checkpoint=resume_from_checkpoint,
            shots=shots,
            dataset_name=dataset_name,
        )

    def fit_pixels(
        self,
        pixel_values,
        labels,
        args=None,
        *,
        resume_from_checkpoint=None,
        shots: int | None = None,
        dataset_name: str | None = None,
    ) -> CraFTForImageClassification:
        """The loop on prepared images [N, 3, H, W] and labels [N]; returns self, the run's
        history in `history_`."""
        from .training import CollaborativeLoop

        loop = CollaborativeLoop(self, self.require_black_box(), pixel_values, labels, args)
        loop.run(resume_from_checkpoint=resume_from_checkpoint)
        self.config.shots = shots
        self.config.queries_spent = int(self.black_box.queries)
        self.record_provenance(
            seed=loop.args.seed, dataset_name=dataset_name, num_train_images=len(labels), history=loop.history
        )
        return self

    # ------------------------------------------------------------------ forward
    def black_box_scores(self, pixel_values) -> torch.Tensor:
        """Y_I: the black box's scores [B, K] for the learned prompt (one query)."""
        box = self.require_black_box()
        handle = box.upload_images(pixel_values)
        return torch.from_numpy(np.asarray(box.query(self.prompt.context(), handle, self.class_names())))

    def forward(self, pixel_values=None, labels=None, return_dict: bool | None = None, **kwargs):
        """[B, 3, H, W] pixel values (the black box's preprocessing) -> `ImageClassifierOutput`."""
        if pixel_values is None:
            raise ValueError(
                "CraFTForImageClassification needs pixel_values (images prepared with the black box's image processor)"
            )
        self._warn_if_unfitted()
        y_i = self.black_box_scores(pixel_values).to(self.device)
        logits = self.refiner(y_i)
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        out = ImageClassifierOutput(loss=loss, logits=logits)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return out if return_dict else out.to_tuple()

    @torch.no_grad()
    def predict(self, pixel_values, batch_size: int = 1024) -> torch.Tensor:
        """Logits [N, K] in batches of `batch_size` images (one query per batch)."""
        starts = range(0, len(pixel_values), batch_size)
        chunks = [self(pixel_values=pixel_values[i : i + batch_size]).logits for i in starts]
        return torch.cat(chunks)

    def pixel_values(self, dataset, image_processor=None, image_column: str = "image") -> torch.Tensor:
        """The images of a `datasets.Dataset` prepared with the black box's image processor."""
        processor = image_processor or self.image_processor
        if processor is None:
            raise ValueError(
                "this black box exposes no image processor: pass image_processor= (the owner's, e.g. "
                "AutoImageProcessor.from_pretrained(<its CLIP name>))"
            )
        images = [im.convert("RGB") for im in dataset[image_column]]
        return processor(images=images, return_tensors="pt")["pixel_values"]

    def compute_metrics(
        self,
        dataset,
        *,
        split: str = "test",
        batch_size: int = 1024,
        image_processor=None,
        image_column: str = "image",
        label_column: str = "label",
    ) -> dict:
        """Top-1 and mean per-class accuracy (%) on a labelled dataset (one query per batch)."""
        from ..metrics import accuracy, per_class_accuracy

        logits = self.predict(self.pixel_values(dataset, image_processor, image_column), batch_size)
        labels = torch.as_tensor(dataset[label_column])
        return {"accuracy": accuracy(logits, labels), "per_class_accuracy": per_class_accuracy(logits, labels)}

    # ------------------------------------------------------------------ saving / card
    def _save_extra_files(self, directory) -> None:
        if self.image_processor is not None:  # so pipeline(model=folder) prepares images as the black box does
            self.image_processor.save_pretrained(directory)

    def card_base_model(self) -> str | None:
        return None if _is_url(self.config.black_box) else self.config.black_box

    def card_vars(self) -> dict:
        c = self.config
        return dict(
            num_classes=c.num_labels,
            shots=c.shots,
            seed=c.seed,
            ctx_init=c.ctx_init,
            n_ctx=c.n_ctx,
            intrinsic_dim=c.intrinsic_dim,
            refine_hidden=c.refine_hidden,
            queries_spent=c.queries_spent,
            black_box=c.black_box if not _is_url(c.black_box) else "a served black box (URL not published)",
        )


register_auto(CraFTConfig, CraFTForImageClassification)
