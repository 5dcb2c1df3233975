"""Parity of CoOp with its authors' code, in float64 on a tiny random CLIP.

Reference re-derived from KaiyangZhou/CoOp `trainers/coop.py`:
* PromptLearner (L60-183): "X X X X {name}." tokenised ("_" read as space, L98), the SOS
  embedding as prefix (L109), the learned context, then the embeddings of the name, "."
  and EOS (L110); class token at the end (L126-134); context N(0, 0.02²) (L85-90) or the
  word embeddings of CTX_INIT (L72-81). CLASS_TOKEN_POSITION "middle" (L136-157): per
  class, the first name_len rows of the suffix (name_len = token count of the name alone,
  L99) go between ctx[:n_ctx // 2] and ctx[n_ctx // 2:]; "front" (L159-177): the name
  rows, then all of the context, then the rest of the suffix. The prompt keeps its
  length, and the text encoder pools at the EOS of the unpermuted "X … X {name}." ids
  (`tokenized_prompts`, L102, L114, L189, L200).
* TextEncoder (L37-57): prompts + positional embedding, CLIP's causal transformer,
  ln_final, the state at the EOS token (`argmax` of the ids: EOS has the largest id in
  CLIP's vocabulary; the tiny test vocabulary does not, so the reference looks the EOS
  up by id), times text_projection.
* CustomCLIP.forward (L195-208): both sides normalised, logits = logit_scale·x·Tᵀ;
  loss = cross-entropy (L266, L273); only the prompt learner is trained (L236-246).
The transformer is re-derived from OpenAI CLIP's `clip/model.py` ResidualAttentionBlock
(pre-LayerNorm attention and QuickGELU MLP, causal mask) over the tiny model's weights.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.coop.functional import coop_logits
from hf_clipadapt.testing_utils import (
    assert_close_scaled,
    tiny_clip_model,
    tiny_clip_tokenizer,
    tiny_image_processor,
)

NAMES = ["red", "sea_lion", "blue"]


@pytest.fixture
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def assemble_prompts(prefix, ctx, suffix, name_lens, position):
    """PromptLearner.forward (coop.py L118-182): [K, L, W] prompt embeddings."""
    if position == "end":
        return torch.cat([prefix, ctx, suffix], dim=1)
    half = ctx.shape[1] // 2
    rows = []
    for i, name_len in enumerate(name_lens):
        name_i, rest_i = suffix[i : i + 1, :name_len], suffix[i : i + 1, name_len:]
        if position == "middle":
            parts = [prefix[i : i + 1], ctx[i : i + 1, :half], name_i, ctx[i : i + 1, half:], rest_i]
        else:  # "front"
            parts = [prefix[i : i + 1], name_i, ctx[i : i + 1], rest_i]
        rows.append(torch.cat(parts, dim=1))
    return torch.cat(rows, dim=0)


def reference_text_features(text_model, projection, tokenizer, ctx, names, position="end"):
    """CoOp's PromptLearner + TextEncoder (float64): [K, D] unnormalised text features."""
    n_ctx = ctx.shape[-2]
    names = [n.replace("_", " ") for n in names]
    name_lens = [len(tokenizer(n, add_special_tokens=False)["input_ids"]) for n in names]  # coop.py L99
    ids = [tokenizer(" ".join(["X"] * n_ctx) + " " + n + ".")["input_ids"] for n in names]
    length = max(len(i) for i in ids)
    eos = tokenizer.eos_token_id
    ids = torch.tensor([i + [eos] * (length - len(i)) for i in ids])
    emb = text_model.embeddings.token_embedding.weight.double()[ids]
    ctx = ctx.double().expand(len(names), n_ctx, ctx.shape[-1]) if ctx.dim() == 2 else ctx.double()
    x = assemble_prompts(emb[:, :1], ctx, emb[:, 1 + n_ctx :], name_lens, position)
    x = x + text_model.embeddings.position_embedding.weight.double()[:length]
    for layer in text_model.encoder.layers:
        x = x + attention(layer, x)
        h = F.layer_norm(
            x, x.shape[-1:], layer.layer_norm2.weight.double(), layer.layer_norm2.bias.double(), layer.layer_norm2.eps
        )
        h = F.linear(h, layer.mlp.fc1.weight.double(), layer.mlp.fc1.bias.double())
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + F.linear(h, layer.mlp.fc2.weight.double(), layer.mlp.fc2.bias.double())
    ln = text_model.final_layer_norm
    x = F.layer_norm(x, x.shape[-1:], ln.weight.double(), ln.bias.double(), ln.eps)
    eos_at = (ids == eos).int().argmax(dim=-1)  # the first EOS (argmax of the ids in OpenAI's vocabulary)
    return x[torch.arange(len(names)), eos_at] @ projection.weight.double().T


def attention(layer, x):
    """Pre-LN multi-head causal self-attention of one block, float64."""
    a = layer.self_attn
    ln = layer.layer_norm1
    h = F.layer_norm(x, x.shape[-1:], ln.weight.double(), ln.bias.double(), ln.eps)
    b, n, w = h.shape
    heads = a.num_heads
    q, k, v = (
        F.linear(h, p.weight.double(), p.bias.double()).view(b, n, heads, -1).transpose(1, 2)
        for p in (a.q_proj, a.k_proj, a.v_proj)
    )
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w)
    return F.linear(out, a.out_proj.weight.double(), a.out_proj.bias.double())


def reference_logits(clip, ctx, names, x, logit_scale, position="end"):
    t = reference_text_features(
        clip.model.text_model, clip.model.text_projection, clip.tokenizer, ctx, names, position
    )
    return logit_scale * x / x.norm(dim=-1, keepdim=True) @ F.normalize(t, dim=-1).T


@pytest.mark.parametrize(
    "ctx_init,n_ctx,csc,position",
    [
        ("a photo of a", None, False, "end"),
        (None, 16, False, "end"),
        (None, 4, True, "end"),
        ("a photo of a", None, False, "middle"),
        (None, 5, True, "middle"),
        (None, 3, False, "front"),
        ("a photo of a", None, True, "front"),
    ],
)
def test_logits_loss_and_context_gradient_match_coop(clip, ctx_init, n_ctx, csc, position):
    model = CoOpForImageClassification.from_clip(
        clip, NAMES, ctx_init=ctx_init, n_ctx=n_ctx, class_specific=csc, class_token_position=position, seed=0
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.prompt_learner.ctx.add_(0.05 * torch.randn(model.prompt_learner.ctx.shape, generator=g))
    x = F.normalize(torch.randn(5, clip.embed_dim, generator=g, dtype=torch.float64), dim=-1)
    y = torch.tensor([0, 1, 2, 1, 0])
    scale = model.config.logit_scale

    # float64: the library's prompt path + functional core against the reference
    model64 = model.double()
    ctx_ours = model64.prompt_learner.ctx
    ours = coop_logits(x, model64.class_text_features(), scale)
    ctx_ref = ctx_ours.detach().clone().requires_grad_(True)
    ref = reference_logits(clip, ctx_ref, NAMES, x, scale, position)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10 * scale)
    loss_ours, loss_ref = F.cross_entropy(ours, y), F.cross_entropy(ref, y)
    torch.testing.assert_close(loss_ours, loss_ref, rtol=1e-10, atol=1e-12)
    (grad_ours,) = torch.autograd.grad(loss_ours, ctx_ours)
    (grad_ref,) = torch.autograd.grad(loss_ref, ctx_ref)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-8, atol=1e-12 * grad_ref.abs().max().item())

    # float32: the model's forward and loss, the way fit calls them
    model32 = model.float()
    out = model32(image_features=x.float(), labels=y)
    assert_close_scaled(out.logits, ref.float())
    assert_close_scaled(out.loss, loss_ref.float())


def test_initial_context_is_the_word_embeddings_of_ctx_init(clip):
    model = CoOpForImageClassification.from_clip(clip, NAMES)  # "a photo of a", coop.py L72-81
    ids = clip.tokenizer("a photo of a")["input_ids"][1:-1]
    want = clip.model.text_model.embeddings.token_embedding.weight[ids]
    torch.testing.assert_close(model.prompt_learner.ctx, want, rtol=0, atol=0)
    assert model.config.n_ctx == len(ids)


def test_random_context_is_normal_with_std_002(clip):
    model = CoOpForImageClassification.from_clip(clip, ["a", "b"], ctx_init=None, n_ctx=16, seed=3)  # coop.py L85-90
    ctx = model.prompt_learner.ctx.detach()
    assert ctx.shape == (16, 32)
    assert abs(ctx.std().item() - 0.02) < 0.004 and abs(ctx.mean().item()) < 0.004


def test_class_token_positions_give_different_prompts(clip):
    """The three positions are three different prompts (the names have 3, 8 and 4 tokens
    here, so the context sits at different positions per class), each pooled at its EOS."""
    feats = {}
    for position in ("end", "middle", "front"):
        model = CoOpForImageClassification.from_clip(clip, NAMES, class_token_position=position).double()
        feats[position] = model.class_text_features()
        ref = reference_text_features(
            clip.model.text_model,
            clip.model.text_projection,
            clip.tokenizer,
            model.prompt_learner.ctx.detach(),
            NAMES,
            position,
        )
        torch.testing.assert_close(feats[position], F.normalize(ref, dim=-1), rtol=1e-10, atol=1e-12)
    assert (feats["end"] - feats["middle"]).abs().max() > 1e-3
    assert (feats["end"] - feats["front"]).abs().max() > 1e-3
    assert (feats["middle"] - feats["front"]).abs().max() > 1e-3
