import numpy as np
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone, SoftPromptTextEncoder
from hf_clipadapt.craft import BlackBoxCLIP, QueryBudgetExceeded
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

CLASSES = ["cat", "dog", "car"]


@pytest.fixture
def backbone():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def test_counts_queries_and_enforces_the_budget(backbone):
    bb = BlackBoxCLIP(backbone, budget=5)
    x = torch.randn(3, 3, 30, 30)
    scores = bb.query_texts(x, [f"a photo of a {c}." for c in CLASSES])
    assert isinstance(scores, np.ndarray) and scores.shape == (3, 3)
    assert bb.queries == 3 and bb.remaining == 2
    with pytest.raises(QueryBudgetExceeded, match="budget of 5"):
        bb.query_texts(x, ["a cat."])
    assert bb.queries == 3  # a refused query is not charged


def test_context_query_equals_text_query_for_the_real_prompt_embeddings(backbone):
    bb = BlackBoxCLIP(backbone, output="probs")
    enc = SoftPromptTextEncoder(backbone.model, backbone.tokenizer)
    context = enc.init_context_from_text("a photo of a").numpy()
    x = torch.randn(4, 3, 30, 30)
    by_context = bb.query_context(x, context, CLASSES)
    by_text = bb.query_texts(x, [f"a photo of a {c}." for c in CLASSES])
    np.testing.assert_allclose(by_context, by_text, atol=1e-5)
    np.testing.assert_allclose(by_context.sum(-1), 1.0, atol=1e-5)
    assert bb.queries == 8


def test_exposes_no_model_and_no_gradients(backbone):
    bb = BlackBoxCLIP(backbone)
    assert not hasattr(bb, "backbone") and not hasattr(bb, "model")
    context = torch.zeros(2, bb.text_width, requires_grad=True)
    out = bb.query_context(torch.randn(1, 3, 30, 30), context, CLASSES)
    assert isinstance(out, np.ndarray)
    with pytest.raises(ValueError, match=r"context must be"):
        bb.query_context(torch.randn(1, 3, 30, 30), np.zeros((2, bb.text_width + 1)), CLASSES)
