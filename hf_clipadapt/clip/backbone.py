"""`CLIPBackbone`: one frozen CLIP-family model with its tokenizer and image processor.

Every method in this package sees CLIP through this wrapper: L2-normalised image
and text embeddings, zero-shot classifier weights from prompt templates, and the
image transform that `hf_clipadapt.features.extract_features` expects.
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from torch import nn

from .templates import DEFAULT_TEMPLATES


class CLIPBackbone(nn.Module):
    """A frozen CLIP-family dual encoder (`CLIPModel`; `SiglipModel` for the plain encoders).

    The weights are frozen (`requires_grad=False`) and the module stays in eval mode,
    as all methods here adapt *around* CLIP. Nothing is wrapped in `torch.no_grad()`
    on the image side, so a method that unfreezes a few parameters (UEO trains the
    visual LayerNorm affines) still gets gradients; with everything frozen autograd
    records nothing anyway.

    Args:
        model: a transformers model with `get_image_features` / `get_text_features`.
        tokenizer: needed for `encode_texts`, `zero_shot_classifier` and soft prompts.
        image_processor: needed for `preprocess` and `image_transform`.
        freeze: freeze the weights and pin eval mode (default). Pass False to fine-tune CLIP itself.
    """

    def __init__(self, model: nn.Module, tokenizer=None, image_processor=None, *, freeze: bool = True):
        super().__init__()
        self._check_dual_encoder(model)
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.frozen = freeze
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    @staticmethod
    def _check_dual_encoder(model, source: str | None = None) -> None:
        for attr in ("get_image_features", "get_text_features"):
            if not hasattr(model, attr):
                where = f" loaded from {source!r}" if source else ""
                raise TypeError(
                    f"CLIPBackbone needs a CLIP-family dual encoder with `{attr}` (e.g. CLIPModel), "
                    f"got {type(model).__name__}{where}, which is not a CLIP. "
                    "Load one with AutoModel.from_pretrained('openai/clip-vit-base-patch16')."
                )

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, freeze: bool = True, **kwargs) -> CLIPBackbone:
        """Load model, tokenizer and image processor from one Hub id or local directory.

        `kwargs` go to `AutoModel.from_pretrained` (e.g. `dtype=torch.float16`, `device_map`).
        """
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        from ..checkpoints import check_pretrained_path

        path = check_pretrained_path(name_or_path)  # resolves aliases ("testbed"); clear error for a missing folder
        model = AutoModel.from_pretrained(path, **kwargs)
        cls._check_dual_encoder(model, name_or_path)  # before the processors: a BERT has none to load
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = AutoImageProcessor.from_pretrained(path)
        return cls(model, tokenizer, image_processor, freeze=freeze)

    def attach_processors(self, path) -> None:
        """Load the image processor and tokenizer saved in `path` where this backbone has none
        (a CLIP rebuilt from a checkpoint that stored its weights)."""
        from transformers import AutoImageProcessor, AutoTokenizer

        from ..checkpoints import PROCESSOR_FILES, TOKENIZER_FILES, load_saved_part

        if self.image_processor is None:
            self.image_processor = load_saved_part(
                AutoImageProcessor.from_pretrained, path, "image processor", PROCESSOR_FILES
            )
        if self.tokenizer is None:
            self.tokenizer = load_saved_part(AutoTokenizer.from_pretrained, path, "tokenizer", TOKENIZER_FILES)

    def train(self, mode: bool = True):
        # Methods call .train() on modules that contain the backbone; a frozen CLIP
        # must keep its eval behaviour (no dropout) as in the papers.
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    # ------------------------------------------------------------------ properties
    @property
    def config(self):
        return self.model.config

    @property
    def name_or_path(self) -> str:
        return getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__

    @property
    def cache_name(self) -> str:
        """`name_or_path` plus a fingerprint of the weights, the key for cached features.

        The path alone is not enough: a retrained local checkpoint keeps its path, and
        its features must not be served from the cache of the old one. The fingerprint
        hashes every parameter's name, shape and first 64 values: cheap even for big
        models, and different for any two trainings. Memoised only while frozen."""
        if getattr(self, "_cache_name", None) is None or not self.frozen:
            import hashlib

            h = hashlib.sha256()
            for name, p in self.model.state_dict().items():
                h.update(f"{name}{tuple(p.shape)}".encode())
                h.update(p.detach().flatten()[:64].float().cpu().numpy().tobytes())
            self._cache_name = f"{self.name_or_path}#{h.hexdigest()[:12]}"
        return self._cache_name

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint (projected) embedding space."""
        dim = getattr(self.model.config, "projection_dim", None)
        return int(dim) if dim else int(self.model.config.text_config.hidden_size)  # SigLIP: no projection

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature, exp(logit_scale) (≈100 for OpenAI CLIP)."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def crop_size(self) -> int:
        """Side of the square images the vision tower sees (the processor's crop)."""
        processor = self.image_processor
        crop = getattr(processor, "crop_size", None)
        if isinstance(crop, dict) and "height" in crop:
            return int(crop["height"])
        size = getattr(processor, "size", None) or {}
        for key in ("height", "shortest_edge"):
            if key in size:
                return int(size[key])
        return int(self.config.vision_config.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ images
    def encode_images(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """[B, 3, H, W] pixel values -> [B, D] L2-normalised image embeddings (with
        `normalize=False`: the projected embeddings as the CLIP gives them)."""
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        out = _pooled(self.model.get_image_features(pixel_values=pixel_values))
        return F.normalize(out, dim=-1) if normalize else out

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Same as `encode_images`, so the backbone itself can be passed as `encode`."""
        return self.encode_images(pixel_values)

    def _require_processor(self):
        if self.image_processor is None:
            raise ValueError(
                "this CLIPBackbone has no image processor: pass `image_processor=` "
                "(e.g. AutoImageProcessor.from_pretrained(name)) or use CLIPBackbone.from_pretrained."
            )
        return self.image_processor

    def preprocess(self, images: list) -> torch.Tensor:
        """PIL images -> pixel values [B, 3, H, W] with the model's own image processor."""
        processor = self._require_processor()
        images = [img.convert("RGB") if getattr(img, "mode", "RGB") != "RGB" else img for img in images]
        return processor(images=images, return_tensors="pt")["pixel_values"]

    @property
    def preprocess_cache_id(self) -> str:
        """Identifies `preprocess` in feature-cache keys (the processor's full config)."""
        processor = self._require_processor()
        config = json.dumps(processor.to_dict(), sort_keys=True, default=str)
        return f"{type(processor).__name__}-{hashlib.sha256(config.encode()).hexdigest()[:12]}"

    def image_transform(self) -> PreprocessTransform:
        """A `features.extract_features` transform: plain preprocessing, no augmentation."""
        return PreprocessTransform(self.preprocess, self.preprocess_cache_id)

    # ------------------------------------------------------------------ texts
    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(
                "this CLIPBackbone has no tokenizer: pass `tokenizer=` "
                "(e.g. AutoTokenizer.from_pretrained(name)) or use CLIPBackbone.from_pretrained."
            )
        return self.tokenizer

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokenizer = self._require_tokenizer()
        if getattr(self.model.config, "model_type", "").startswith("siglip"):
            # SigLIP was trained on texts padded to 64 tokens and pools the last one.
            return tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        return tokenizer(texts, padding=True, truncation=True, return_tensors="pt")

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Texts -> [T, D] L2-normalised text embeddings (no gradients; see SoftPromptTextEncoder for those)."""
        if isinstance(texts, str):
            raise TypeError(
                f"encode_texts takes a list of strings, got the single string {texts!r}; wrap it in a list"
            )
        if len(texts) == 0:
            raise ValueError("encode_texts got no texts")
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(list(texts[start : start + batch_size])).to(self.device)
            out = self.model.get_text_features(**batch)
            chunks.append(F.normalize(_pooled(out), dim=-1))
        return torch.cat(chunks)

    @torch.no_grad()
    def zero_shot_classifier(self, classnames: list[str], templates: list[str] | None = None) -> torch.Tensor:
        """[K, D] zero-shot weights: per class, the normalised mean of its normalised template embeddings.

        `templates` default to ["a photo of a {}."]; see `get_templates(dataset_name)`.
        """
        classnames = check_classnames(classnames)
        templates = list(DEFAULT_TEMPLATES if templates is None else templates)
        if not templates:
            raise ValueError("zero_shot_classifier got an empty template list; pass None for the default template.")
        bad = [t for t in templates if "{}" not in t]
        if bad:
            raise ValueError(f"every template needs a '{{}}' placeholder for the class name; these have none: {bad}")
        texts = [t.format(prompt_name(c)) for c in classnames for t in templates]
        emb = self.encode_texts(texts).view(len(classnames), len(templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)


class PreprocessTransform:
    """`(images, indices, view) -> pixel_values` that ignores indices/view (deterministic preprocessing)."""

    def __init__(self, preprocess, cache_id: str):
        self.preprocess = preprocess
        self.cache_id = cache_id

    def __call__(self, images, indices=None, view: int = 0) -> torch.Tensor:
        return self.preprocess(images)

    def __repr__(self):
        return f"PreprocessTransform({self.cache_id})"


def prompt_name(classname: str) -> str:
    """The words a class name becomes in a prompt: "_" read as a space.

    Every official codebase of the methods here does this before tokenising (CoOp
    `trainers/coop.py` L98, CLIP-Adapter `clip_adapter.py` L81, Tip-Adapter `utils.py`
    L24, SHIP `main_coop_vae.py` L85/L256): dataset folders name classes
    "golden_retriever", and CLIP's tokenizer reads "_" as a token of its own, which
    changes the text features completely. Every path of this package from a class name
    to text (`CLIPBackbone.zero_shot_classifier`, `SoftPromptTextEncoder.tokenize_classnames`,
    so CoOp, UEO, SHIP and CraFT too) goes through here; labels keep their own spelling.
    """
    return classname.replace("_", " ")


def check_classnames(classnames) -> list[str]:
    """Validate a class-name list: non-blank strings, no two that become the same prompt
    (`prompt_name`: "a_b" and "a b" would make two identical classes)."""
    if isinstance(classnames, str):
        raise TypeError(f"classnames must be a list of strings, got the single string {classnames!r}")
    classnames = list(classnames)
    if not classnames:
        raise ValueError("classnames is empty; pass one name per class, e.g. class_names(dataset).")
    not_str = [c for c in classnames if not isinstance(c, str)]
    if not_str:
        raise TypeError(f"classnames must be strings; got {not_str[:5]}. Map label ids to names first.")
    blank = [i for i, c in enumerate(classnames) if not c.strip()]
    if blank:
        raise ValueError(
            f"class names at positions {blank[:5]} are empty or blank; every class needs a name to prompt CLIP with."
        )
    seen, dup = {}, []
    for c in classnames:
        key = " ".join(prompt_name(c).split())
        if key in seen:
            dup.append(c if c == seen[key] else f"{seen[key]!r} = {c!r}")
        seen.setdefault(key, c)
    if dup:
        raise ValueError(
            f"duplicate class names {sorted(set(dup))}: each class needs a distinct name, "
            "otherwise their zero-shot weights are identical. Disambiguate them (e.g. 'crane (bird)')."
        )
    return classnames


def _pooled(out) -> torch.Tensor:
    # transformers >= 5 returns a ModelOutput whose pooler_output is the projected
    # embedding; v4 returned the tensor itself.
    return out if isinstance(out, torch.Tensor) else out.pooler_output
