"""Bad input a newcomer gives the shared layer (issue 27): each is refused at the point it is
first taken, with an error that names what is wrong and what to do."""

import json
import time

import pytest
import torch

from hf_clipadapt.testing_utils import save_tiny_clip, tiny_image_dataset
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted, saved Tip-Adapter on the tiny CLIP (training-free: fast)."""
    tmp = tmp_path_factory.mktemp("bad_input")
    data = tiny_image_dataset(num_classes=3, per_class=2)
    model = TipAdapterForImageClassification.from_clip(save_tiny_clip(tmp / "clip"), data.features["label"].names)
    model.fit(data)
    model.save_pretrained(tmp / "saved")
    return model, tmp / "saved", tmp / "clip", data


def _copy_with_config(src, dst, **changes):
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    for key, value in changes.items():
        if value is _DROP:
            config.pop(key)
        else:
            config[key] = value
    (dst / "config.json").write_text(json.dumps(config))  # json writes NaN as NaN, which json.loads reads back
    return dst


_DROP = object()


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("logit_scale", float("nan"), "logit_scale must be a finite number, got nan"),
        ("logit_scale", -1.0, "logit_scale must be > 0"),
        ("alpha", "abc", "alpha must be a finite number, got 'abc'"),
        ("beta", float("inf"), "beta must be a finite number"),
    ],
)
def test_config_json_with_bad_numbers_is_refused_at_load(saved, tmp_path, field, value, match):
    from transformers import AutoConfig

    _, folder, _, _ = saved
    bad = _copy_with_config(folder, tmp_path / "bad", **{field: value})
    with pytest.raises(ValueError, match=match):
        AutoConfig.from_pretrained(bad)
    with pytest.raises(ValueError, match=match):
        TipAdapterForImageClassification.from_pretrained(bad)


def test_gda_alpha_that_is_not_a_number_is_refused():
    # used to fail as "'<' not supported between instances of 'str' and 'int'"
    from hf_clipadapt.gda import GDAConfig

    with pytest.raises(ValueError, match="GDAConfig: alpha must be a finite number, got 'abc'"):
        GDAConfig(alpha="abc")
    with pytest.raises(ValueError, match="GDAConfig: alphas must be a finite number, got nan"):
        GDAConfig(alphas=[1.0, float("nan")])


def test_missing_embed_dim_is_named_not_blamed_on_the_clip(saved, tmp_path):
    _, folder, _, _ = saved
    bad = _copy_with_config(folder, tmp_path / "bad", embed_dim=_DROP)
    with pytest.raises(OSError, match="config.json has no 'embed_dim'") as err:
        TipAdapterForImageClassification.from_pretrained(bad)
    assert "another width" not in str(err.value) and "has width" not in str(err.value)


def _tiny_bert(path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "dog"]))
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    cfg = BertConfig(vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    BertModel(cfg).save_pretrained(path)
    return str(path)


def test_a_bert_folder_given_as_the_clip_is_called_not_a_clip(tmp_path):
    # used to fail with "Can't load image processor", as if a file were missing
    from hf_clipadapt.clip import CLIPBackbone

    bert = _tiny_bert(tmp_path / "bert")
    with pytest.raises(TypeError, match=r"got BertModel loaded from .*bert', which is not a CLIP"):
        CLIPBackbone.from_pretrained(bert)
    with pytest.raises(TypeError, match="which is not a CLIP"):
        TipAdapterForImageClassification.from_clip(bert, ["cat", "dog"])


def test_pixel_values_as_a_list_is_a_clear_type_error(saved):
    model, _, _, _ = saved
    pixel_values = torch.zeros(2, 3, 30, 30)
    with pytest.raises(
        TypeError, match=r"pixel_values must be a torch.Tensor \[batch, 3, H, W\], got list.*torch.stack"
    ):
        model(pixel_values=list(pixel_values))
    with pytest.raises(TypeError, match=r"image_features must be a torch.Tensor \[batch, D\], got list"):
        model(image_features=[[0.0] * model.config.embed_dim])


@pytest.mark.parametrize("method", ["fit", "evaluate"])
@pytest.mark.parametrize(
    "rename, match",
    [
        (("label", "labels"), r"no 'label' column \(label_column='label'\); its columns are \['image', 'labels'\]"),
        (("image", "img"), r"no 'image' column \(image_column='image'\); its columns are \['img', 'label'\]"),
    ],
)
def test_a_missing_column_is_named_with_the_argument_to_set(saved, method, rename, match):
    model, _, clip, data = saved
    fresh = TipAdapterForImageClassification.from_clip(str(clip), data.features["label"].names)
    with pytest.raises(KeyError, match=match + r".*Pass (label|image)_column="):
        getattr(fresh, method)(data.rename_column(*rename))


def test_a_typo_in_a_template_set_is_refused_with_close_matches():
    from hf_clipadapt.clip import get_templates

    with pytest.raises(ValueError, match="no template set named 'eurosta'; did you mean 'eurosat'"):
        get_templates("eurosta")
    # spellings of known sets and names far from every set behave as before
    assert get_templates("EuroSAT") == get_templates("tanganke/eurosat")
    assert get_templates("mnist") == ["a photo of a {}."]


def test_an_unreachable_hub_fails_fast_and_says_so(monkeypatch, tmp_path):
    # HF_HUB_OFFLINE unset, nothing cached, an endpoint nobody listens on: one refused
    # connection decides, instead of a minute of transformers' retries (71 s measured)
    from huggingface_hub import constants

    from hf_clipadapt.clip import CLIPBackbone

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(
        OSError,
        match=r"'nobody/no-such-clip' is not a local folder nor in the Hugging Face cache, "
        r"and the Hub at http://127.0.0.1:9 cannot be reached",
    ):
        CLIPBackbone.from_pretrained("nobody/no-such-clip")
    with pytest.raises(OSError, match="cannot be reached"):
        TipAdapterForImageClassification.from_pretrained("nobody/no-such-model")
    assert time.perf_counter() - start < 10
