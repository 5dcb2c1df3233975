"""The black-box protocol: exact budget, checked answers, nothing with a gradient crosses."""

import numpy as np
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.craft import BlackBoxError, BlackBoxVLM, LocalBlackBox, QueryBudgetExceeded
from hf_clipadapt.testing_utils import assert_close_scaled, tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

CLASSES = ["cat", "dog", "car"]


@pytest.fixture
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


class FakeBox(BlackBoxVLM):
    """Answers with whatever `answer(P, K)` returns; counts the calls that reach it."""

    text_width = 8

    def __init__(self, answer, **kw):
        super().__init__(**kw)
        self.answer, self.calls = answer, 0

    def _upload(self, pixel_values):
        return "h"

    def _score_contexts(self, contexts, images, class_names):
        self.calls += 1
        return self.answer(len(contexts), len(class_names))

    def _score_texts(self, texts, images):
        self.calls += 1
        return self.answer(1, len(texts))[0]


def test_budget_holds_to_the_exact_query_and_refuses_before_sending():
    box = FakeBox(lambda p, k: np.zeros((p, 2, k)), budget=7)
    box.query(np.zeros((4, 2, 8)), "h", CLASSES)
    box.query_texts(["a", "b", "c"], "h")
    assert box.queries == 5 and box.remaining == 2 and box.calls == 2
    with pytest.raises(QueryBudgetExceeded, match="budget of 7"):
        box.query(np.zeros((3, 2, 8)), "h", CLASSES)  # 3 > 2 left: refused whole, nothing sent
    assert box.queries == 5 and box.calls == 2
    box.query(np.zeros((2, 2, 8)), "h", CLASSES)  # the last two queries are still usable
    assert box.queries == 7 and box.remaining == 0
    with pytest.raises(QueryBudgetExceeded):
        box.query_texts(["a", "b", "c"], "h")
    assert box.queries == 7 and box.calls == 3


def test_wrong_class_count_or_non_finite_scores_name_the_query():
    box = FakeBox(lambda p, k: np.zeros((p, 2, k + 1)))
    with pytest.raises(BlackBoxError, match=r"queries 1\.\.2.*one score per class"):
        box.query(np.zeros((2, 2, 8)), "h", CLASSES)
    with pytest.raises(BlackBoxError, match=r"queries 3\.\.3.*shape \(1, 2, 4\)"):
        box.query(np.zeros((2, 8)), "h", CLASSES)

    def nan_in_second(p, k):
        out = np.zeros((p, 2, k))
        if p > 1:
            out[1, 0, 0] = np.nan
        return out

    box = FakeBox(nan_in_second)
    box.query(np.zeros((1, 2, 8)), "h", CLASSES)
    with pytest.raises(BlackBoxError, match=r"query 3 \(prompt 1 of this call\).*NaN or inf"):
        box.query(np.zeros((2, 2, 8)), "h", CLASSES)


def test_bad_arguments_are_refused_clearly():
    box = FakeBox(lambda p, k: np.zeros((p, 1, k)))
    with pytest.raises(ValueError, match="budget must be"):
        FakeBox(None, budget=-1)
    with pytest.raises(ValueError, match=r"contexts must be \[n, 8\]"):
        box.query(np.zeros((2, 3, 7)), "h", CLASSES)
    with pytest.raises(ValueError, match="class_names must be a non-empty list"):
        box.query(np.zeros((2, 8)), "h", "cat")
    assert box.queries == 0


def test_local_context_query_equals_text_query_at_the_real_prompt(clip):
    box = LocalBlackBox(clip)
    p0 = box.context_embeddings("a photo of a")
    handle = box.upload_images(torch.randn(5, 3, 30, 30))
    by_context = box.query(
        np.stack([p0, p0 + np.random.default_rng(0).normal(size=p0.shape).astype(np.float32)]), handle, CLASSES
    )
    by_text = box.query_texts([f"a photo of a {c}." for c in CLASSES], handle)
    assert by_context.shape == (2, 5, 3) and box.queries == 3
    assert_close_scaled(by_context[0], by_text, 1e-5)
    assert not np.allclose(by_context[1], by_context[0])


def test_images_are_encoded_once_and_cached_owner_side(clip, monkeypatch):
    box = LocalBlackBox(clip)
    calls = []
    original = clip.encode_images
    monkeypatch.setattr(clip, "encode_images", lambda x: calls.append(len(x)) or original(x))
    x = torch.randn(3, 3, 30, 30)
    assert box.upload_images(x) == box.upload_images(x.clone())
    assert calls == [3]
    with pytest.raises(KeyError, match="upload the images"):
        box.query(box.context_embeddings("a photo of a"), "nope", CLASSES)


def test_nothing_that_requires_grad_crosses_to_the_user_side(clip):
    box = LocalBlackBox(clip)
    assert not hasattr(box, "backbone") and not hasattr(box, "model")
    p0 = torch.tensor(box.context_embeddings("a photo of a"), requires_grad=True)
    handle = box.upload_images(torch.randn(2, 3, 30, 30, requires_grad=True))
    returned = [
        box.context_embeddings("a photo of a"),
        box.query(p0 * 2, handle, CLASSES),
        box.query_texts(["a cat.", "a dog.", "a car."], handle),
        box.info(),
    ]
    for value in returned:
        assert isinstance(value, (np.ndarray, dict)), type(value)
    assert all(not isinstance(v, torch.Tensor) for v in box.info().values())
    assert p0.grad is None and torch.is_grad_enabled()
    public = {k: v for k, v in vars(box).items() if not k.startswith("_")}
    assert not any(isinstance(v, (torch.Tensor, torch.nn.Module)) for v in public.values())
