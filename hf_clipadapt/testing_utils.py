"""Tiny, randomly initialised CLIP pieces for tests and docs, built without the Hub.

Used by the test suite of every method and handy for users writing their own
tests. Nothing here is pretrained: it proves that code runs and that invariants
hold, not that a method helps (the testbed CLIP does that).
"""

from __future__ import annotations

import string

import numpy as np
import torch

from .testing_distributed import run_distributed as run_distributed  # re-exported: tests import it from here

TINY_IMAGE_SIZE = 30


def tiny_clip_config(**overrides):
    from transformers import CLIPConfig

    kwargs = dict(
        text_config=dict(
            vocab_size=99,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=TINY_IMAGE_SIZE,
            patch_size=2,
        ),
        projection_dim=16,
    )
    kwargs.update(overrides)
    return CLIPConfig(**kwargs)


def tiny_clip_model(seed: int = 0, **overrides):
    from transformers import CLIPModel

    torch.manual_seed(seed)
    return CLIPModel(tiny_clip_config(**overrides)).eval()


def tiny_clip_vocab() -> dict[str, int]:
    """Character-level BPE vocabulary (no merges): every word splits into letters,
    the last one carrying CLIP's end-of-word marker. 2 specials + 2×40 symbols < 99."""
    symbols = list(string.ascii_lowercase) + list(string.digits) + [".", ",", "-", "'"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols:
        vocab[s] = len(vocab)
        vocab[s + "</w>"] = len(vocab)
    return vocab


def tiny_clip_tokenizer(tmp_dir=None):
    """A working CLIPTokenizer over `tiny_clip_vocab`; ids stay below the tiny vocab size (99)."""
    from transformers import CLIPTokenizer

    vocab = tiny_clip_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tok


def tiny_image_processor(size: int = TINY_IMAGE_SIZE):
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def tiny_image_dataset(num_classes: int = 3, per_class: int = 6, size: int = 16, seed: int = 0, class_names=None):
    """A `datasets.Dataset` of small RGB images whose class is visible in the pixels
    (a class-specific colour plus noise), with an `image` and a `label` column."""
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(num_classes, 3))
    images, labels = [], []
    for c in range(num_classes):
        for _ in range(per_class):
            noise = rng.normal(0, 25, size=(size, size, 3))
            images.append(np.clip(palette[c] + noise, 0, 255).astype(np.uint8))
            labels.append(c)
    names = class_names or [f"class{c}" for c in range(num_classes)]
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def save_tiny_clip(path) -> str:
    """Save the tiny CLIP (model, tokenizer, image processor) to `path`, as a Hub
    checkpoint would be, and return the path (a base model `from_pretrained` can follow)."""
    model = tiny_clip_model()
    model.save_pretrained(path)
    tiny_clip_tokenizer().save_pretrained(path)
    tiny_image_processor().save_pretrained(path)
    return str(path)


class AdaptedModelTesterMixin:
    """One test battery for every model of the package, in the manner of transformers'
    `ModelTesterMixin`. A test class sets `model_class` and implements

    * `make_model(self, tmp_path)`: a fitted (or trained) model, on a tiny CLIP saved
      to disk for CLIP-adapted models (`save_tiny_clip`), so its base reference loads;
    * `make_inputs(self, model)`: forward kwargs (e.g. {"pixel_values": ...}).

    and may set `is_clip_adapted` (the CLIP-reference checks), `pipeline_task`
    (None when a pipeline does not apply) and `max_saved_bytes` (the size the saved
    weights must stay under). Each check is a `test_*` method, so it runs per class.

    The `fit`/`evaluate` contract checks build a fresh model (`make_unfitted_model`), fit it
    (`fit_model(model, seed)`, which must return what `fit` returned) and evaluate it
    (`evaluation_data(model)` -> (dataset, evaluate kwargs)). For a CLIP-adapted model these
    default to `from_clip` on a tiny saved CLIP with `class_names`, `fit` on a tiny labelled
    dataset with `fit_kwargs`, and that dataset. `forward_before_fit` says what a forward on an
    unfitted model does ("warns", or "raises" where its outputs would mean nothing);
    `check_initialisation(model)` asserts the documented initialisation of a fresh model's
    trained parts. A check that does not apply calls `pytest.skip` with the reason.
    """

    model_class = None
    is_clip_adapted = True
    pipeline_task: str | None = "image-classification"
    max_saved_bytes: int | None = None
    class_names = ("red", "green", "blue")
    fit_kwargs: dict = {}
    fit_seed = 3  # not the default seed, so that recording it is checked
    forward_before_fit = "warns"
    fit_keeps_history = True  # False for a closed-form fit, which has no log
    for_classes_refusal: str | None = None  # the error of a model whose trained parts all belong to its classes

    def make_model(self, tmp_path):  # pragma: no cover - abstract
        raise NotImplementedError

    def make_inputs(self, model) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, model, inputs) -> torch.Tensor:
        with torch.no_grad():
            return model.eval()(**inputs).logits

    # ------------------------------------------------------------------ fit / evaluate hooks
    def tiny_labelled_data(self):  # 4 images a class: 2 shots + 2 validation
        return tiny_image_dataset(num_classes=len(self.class_names), per_class=4, class_names=list(self.class_names))

    def make_unfitted_model(self, tmp_path):
        """A fresh, unfitted model. Default: `from_clip` on a tiny saved CLIP."""
        import pytest

        if not self.is_clip_adapted:
            pytest.skip(f"{type(self).__name__} does not say how to build a fresh model (make_unfitted_model)")
        from .clip import CLIPBackbone

        clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "fresh-clip"))
        return self.model_class.from_clip(clip, list(self.class_names))

    def fit_model(self, model, seed: int):
        """Fit `model` with `seed`; returns what `fit` returned."""
        return model.fit(self.tiny_labelled_data(), seed=seed, dataset_name="tiny-colours", **self.fit_kwargs)

    def evaluation_data(self, model):  # (labelled dataset, evaluate kwargs)
        return self.tiny_labelled_data(), {}

    def check_initialisation(self, model) -> None:
        """Assert the documented initialisation of a fresh model's trained parts."""
        import pytest

        pytest.skip(f"{type(self).__name__} states no initialisation to check (check_initialisation)")

    # ------------------------------------------------------------------ fit / evaluate contract
    def test_fit_returns_self_and_records_provenance(self, tmp_path):
        model = self.make_unfitted_model(tmp_path)
        assert not model.config.is_fitted
        out = self.fit_model(model, self.fit_seed)
        assert out is model, f"fit returned {type(out).__name__}, not the model"
        c = model.config
        assert c.is_fitted is True and c.seed == self.fit_seed
        if self.fit_keeps_history:
            assert model.history_ is not None, "fit keeps its log in history_"

    def test_evaluate_reports_the_shared_metric_names(self, tmp_path):
        from .evaluation import METRICS

        model = self.make_model(tmp_path)
        data, kwargs = self.evaluation_data(model)
        result = model.evaluate(data, record_as="tiny-set", **kwargs)
        allowed = set(METRICS) | set(type(model).extra_metrics)
        assert set(result) & set(METRICS), f"evaluate reports none of {METRICS}: {sorted(result)}"
        assert set(result) <= allowed, f"names outside the vocabulary: {sorted(set(result) - allowed)}"
        recorded = {r["metric_type"] for r in model.config.eval_results if r["dataset_name"] == "tiny-set"}
        assert recorded and all(r["dataset_split"] == "test" for r in model.config.eval_results)
        assert recorded <= set(result)

    def test_for_classes_keeps_the_trained_parts(self, tmp_path):
        import pytest

        model = self.make_model(tmp_path)
        if not hasattr(model, "for_classes"):
            pytest.skip(f"{type(model).__name__} has no for_classes: its classes are fixed by what it was built from")
        names = list(reversed(model.class_names()))[:2]
        if self.for_classes_refusal:
            with pytest.raises(ValueError, match=self.for_classes_refusal):
                model.for_classes(names)
            return
        other = model.for_classes(names)
        assert type(other) is type(model) and other.class_names() == names
        assert other.config.eval_results == []
        kept = {k for k in model.saved_state_dict() if not k.startswith(model.class_specific_state)}
        for key in kept:
            assert torch.equal(other.saved_state_dict()[key], model.saved_state_dict()[key]), key
        assert self.logits(other, self.make_inputs(other)).shape[-1] == len(names)

    def test_forward_before_fit(self, tmp_path):
        import warnings

        import pytest

        model = self.make_unfitted_model(tmp_path).eval()
        inputs = self.make_inputs(model)
        if self.forward_before_fit == "raises":
            with pytest.raises(RuntimeError, match="not fitted"):
                model(**inputs)
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad():
                model(**inputs)
        assert any("not been fitted" in str(w.message) for w in caught), [str(w.message) for w in caught]

    def test_fresh_model_has_its_documented_initialisation(self, tmp_path):
        self.check_initialisation(self.make_unfitted_model(tmp_path))

    def test_save_load_gives_identical_logits(self, tmp_path):
        model = self.make_model(tmp_path)
        model.save_pretrained(tmp_path / "saved")
        reloaded = self.model_class.from_pretrained(tmp_path / "saved")
        inputs = self.make_inputs(model)
        assert torch.equal(self.logits(reloaded, inputs), self.logits(model, inputs))
        ignore = {"_name_or_path"}  # where it was loaded from
        config, expected = reloaded.config.to_dict(), model.config.to_dict()
        assert {k: v for k, v in config.items() if k not in ignore} == {
            k: v for k, v in expected.items() if k not in ignore
        }

    def test_saved_weights_hold_only_what_was_fitted(self, tmp_path):
        from safetensors.torch import load_file

        model = self.make_model(tmp_path)
        model.save_pretrained(tmp_path / "saved")
        saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
        if self.is_clip_adapted:
            assert set(saved) == set(model.saved_state_dict())
        else:  # transformers may rename a backbone's keys on save (legacy layouts): compare counts
            assert len(saved) == len(model.saved_state_dict())
        backbone = getattr(model, "backbone", None) if self.is_clip_adapted else None
        if backbone is not None:
            frozen = {p.data_ptr() for p in backbone.parameters() if not p.requires_grad}
            held = [k for k, v in model.saved_state_dict().items() if v.data_ptr() in frozen]
            assert not held, f"the checkpoint holds frozen CLIP tensors: {held[:5]}"
        if self.max_saved_bytes is not None:
            size = (tmp_path / "saved" / "model.safetensors").stat().st_size
            assert size < self.max_saved_bytes, f"saved weights are {size} bytes, over {self.max_saved_bytes}"

    def test_auto_classes_load_it(self, tmp_path):
        from transformers import AutoConfig, AutoModel

        model = self.make_model(tmp_path)
        model.save_pretrained(tmp_path / "saved")
        assert isinstance(AutoConfig.from_pretrained(tmp_path / "saved"), self.model_class.config_class)
        assert type(AutoModel.from_pretrained(tmp_path / "saved")) is self.model_class

    def test_pipeline_on_saved_folder(self, tmp_path):
        if self.pipeline_task is None:
            import pytest

            pytest.skip(f"{self.model_class.__name__} has no pipeline task (pipeline_task=None)")
        from transformers import pipeline

        model = self.make_model(tmp_path)
        model.save_pretrained(tmp_path / "saved")
        classifier = pipeline(self.pipeline_task, model=str(tmp_path / "saved"))
        image = PIL_image(seed=1)
        out = classifier(image, top_k=1)
        processor = model.backbone.image_processor if self.is_clip_adapted else model.image_processor
        pixel_values = processor(images=[image], return_tensors="pt")["pixel_values"]
        probs = self.logits(model, {"pixel_values": pixel_values}).softmax(-1)[0]
        assert out[0]["label"] == model.config.id2label[int(probs.argmax())]

    def test_model_card_lists_recorded_results(self, tmp_path):
        import yaml

        model = self.make_model(tmp_path)
        model.record_result("tiny-set", "accuracy", 87.5)
        model.save_pretrained(tmp_path / "saved")
        card = (tmp_path / "saved" / "README.md").read_text()
        header = yaml.safe_load(card.split("---")[1])
        assert header["library_name"] == "hf_clipadapt"
        values = [m["value"] for r in header["model-index"][0]["results"] for m in r["metrics"]]
        assert 87.5 in values and "87.50" in card

    def test_return_dict_false_gives_a_tuple(self, tmp_path):
        model = self.make_model(tmp_path)
        with torch.no_grad():  # as in `logits`: kernels may differ with autograd on
            out = model.eval()(**self.make_inputs(model), return_dict=False)
        assert isinstance(out, tuple) and torch.equal(out[0], self.logits(model, self.make_inputs(model)))

    def test_clear_errors_on_bad_checkpoints(self, tmp_path):
        import pytest

        with pytest.raises(FileNotFoundError, match="does not exist"):
            self.model_class.from_pretrained(str(tmp_path / "no" / "such" / "folder"))
        other = tmp_path / "other-type"
        tiny_clip_model().save_pretrained(other)
        with pytest.raises(ValueError, match=f"'clip'.*'{self.model_class.config_class.model_type}'"):
            self.model_class.from_pretrained(other)
        model = self.make_model(tmp_path)
        model.save_pretrained(tmp_path / "saved")
        weights = tmp_path / "saved" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:40])
        with pytest.raises(OSError, match="corrupt"):
            self.model_class.from_pretrained(tmp_path / "saved")

    def test_clear_errors_on_wrong_or_missing_clip(self, tmp_path):
        import pytest

        if not self.is_clip_adapted:
            pytest.skip(f"{self.model_class.__name__} refers to no CLIP checkpoint (is_clip_adapted=False)")

        from .clip import CLIPBackbone

        model = self.make_model(tmp_path)
        model.save_pretrained(tmp_path / "saved")
        wide = CLIPBackbone(tiny_clip_model(projection_dim=24), tiny_clip_tokenizer(), tiny_image_processor())
        with pytest.raises(ValueError, match="width"):
            self.model_class.from_pretrained(tmp_path / "saved", backbone=wide)
        model.config.base_model_name_or_path = str(tmp_path / "gone" / "clip")
        model.save_pretrained(tmp_path / "orphan")
        with pytest.raises(OSError, match="base CLIP"):
            self.model_class.from_pretrained(tmp_path / "orphan")


def assert_initialised(
    tensor: torch.Tensor, name: str, *, mean: float | None = None, std: float | None = None, bound: float | None = None
) -> None:
    """Assert that `tensor` looks drawn from its documented initialisation: N(`mean`, `std`²)
    (sample mean within 5 standard errors, sample std within 5 of its standard errors,
    √(1/2n), and 10 %), or U(−`bound`, `bound`) (inside the bound, std as for σ = bound/√3).
    `std=0`: every entry equals `mean`."""
    x = tensor.detach().double().flatten()
    if std == 0:
        assert torch.all(x == (mean or 0.0)), f"{name}: expected every entry {mean or 0.0}"
        return
    if bound is not None:
        assert x.abs().max() <= bound * (1 + 1e-6), f"{name}: entries beyond ±{bound:.4g}"
        mean, std = 0.0, bound / 3**0.5
    n = x.numel()
    assert abs(x.mean().item() - mean) < 5 * std / n**0.5, f"{name}: mean {x.mean().item():.4g}, expected {mean}"
    tolerance = max(0.1, 5 / (2 * n) ** 0.5)
    assert abs(x.std().item() / std - 1) < tolerance, f"{name}: std {x.std().item():.4g}, expected {std:.4g}"


def tiny_carded_model_class(model_type: str):
    """A 2×2-linear `PreTrainedModel` with the package's model card (`ModelCardMixin`), registered
    under no Auto class: the smallest model whose `save_pretrained` goes through the atomic save
    and writes a card. Returns the class; build it with `cls(cls.config_class())`."""
    from transformers import PreTrainedConfig, PreTrainedModel

    from .hub import ModelCardMixin, build_model_card

    config_class = type("TinyConfig", (PreTrainedConfig,), {"model_type": model_type})

    class TinyCarded(ModelCardMixin, PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.linear = torch.nn.Linear(2, 2)
            self.post_init()

        def create_model_card(self, **kwargs):
            return build_model_card(template="default.md", model_name="tiny", base_model="none", datasets=[])

    TinyCarded.config_class = config_class
    return TinyCarded


def PIL_image(size: int = 16, seed: int = 0):
    """One random RGB PIL image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def assert_close_scaled(actual, expected, rtol: float = 1e-5, msg: str | None = None):
    """`actual` ≈ `expected` in float64, to `rtol` of the largest |expected|.

    Float32 results of matrix products carry a rounding error proportional to the
    magnitude of the whole product, not of each entry: another BLAS kernel (another
    CPU, thread count or summation order) moves a small entry of a large product by
    about eps·max|x|. An element-wise relative tolerance passes on one machine and
    fails on the next; this one holds on any of them.
    """
    actual = torch.as_tensor(actual).double()
    expected = torch.as_tensor(expected).double()
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=rtol * max(scale, 1e-12), msg=msg)
