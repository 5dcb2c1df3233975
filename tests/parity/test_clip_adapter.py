"""Parity of CLIP-Adapter with its authors' code, in float64.

Reference re-derived from gaopengcuhk/CLIP-Adapter `clip_adapter.py`:
* Adapter (L55-67): Linear(D, D/4, no bias) -> ReLU -> Linear(D/4, D, no bias) -> ReLU.
* CustomCLIP.forward (L100-115): x' = 0.2·A(x) + 0.8·x on the raw image feature, then
  both x' and the text features normalised, logits = exp(logit_scale)·x'·Tᵀ.
* TextEncoder (L79-86): one template per dataset, "_" in names read as spaces.
* loss = cross-entropy (L155-158); only the adapter is trained (L133-136, L144).
The library caches normalised image features; the official code feeds the raw one. The
blend is not scale-invariant (A ends in a ReLU and has no bias, so A(c·x) = c·A(x) and the
blend of c·x is c times the blend of x): normalising x first changes nothing, which the
last test checks.
"""

import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
from hf_clipadapt.clip_adapter.functional import clip_adapter_logits
from hf_clipadapt.testing_utils import assert_close_scaled, tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

NAMES = ["red", "sea_lion", "blue"]


def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def reference_logits(x_raw, w1, w2, text, logit_scale, ratio=0.2):
    """CustomCLIP.forward of clip_adapter.py, float64; w1 [D/4, D], w2 [D, D/4]."""
    a = torch.relu(torch.relu(x_raw @ w1.T) @ w2.T)
    mixed = ratio * a + (1 - ratio) * x_raw
    mixed = mixed / mixed.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return logit_scale * mixed @ text.T


def test_logits_loss_and_adapter_gradients_match_clip_adapter():
    backbone = clip()
    model = CLIPAdapterForImageClassification.from_clip(backbone, NAMES, ["a photo of a {}."])
    assert (model.config.ratio, model.config.reduction) == (0.2, 4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.adapter.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    x = F.normalize(torch.randn(6, backbone.embed_dim, generator=g, dtype=torch.float64), dim=-1)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    scale = model.config.logit_scale
    # the official text path: the template formatted with "_" read as a space
    spaced = ["a photo of a {}.".format(n.replace("_", " ")) for n in NAMES]
    text = backbone.encode_texts(spaced).double()

    model64 = model.double()
    with torch.no_grad():  # stored normalised in float32; the official code normalises each forward
        model64.text_weights.copy_(F.normalize(model64.text_weights, dim=-1))
    w1, w2 = (m.weight for m in model64.adapter if isinstance(m, torch.nn.Linear))
    ours = clip_adapter_logits(x, model64.adapter, model64.text_weights, 0.2, scale)
    r1, r2 = (w.detach().clone().requires_grad_(True) for w in (w1, w2))
    ref = reference_logits(x, r1, r2, text, scale)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6 * scale)  # text features came through float32
    loss_ours, loss_ref = F.cross_entropy(ours, y), F.cross_entropy(ref, y)
    grads_ours = torch.autograd.grad(loss_ours, [w1, w2])
    grads_ref = torch.autograd.grad(loss_ref, [r1, r2])
    for a, b in zip(grads_ours, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())

    # the same with the library's own text weights as T: exact in float64
    ref_exact = reference_logits(x, w1.detach(), w2.detach(), model64.text_weights.detach(), scale)
    torch.testing.assert_close(ours.detach(), ref_exact, rtol=1e-12, atol=1e-12 * scale)
    model32 = model.float()
    out = model32(image_features=x.float(), labels=y)
    assert_close_scaled(out.logits, ref_exact.float())
    assert_close_scaled(out.loss, F.cross_entropy(ref_exact, y).float())
    assert [n for n, p in model32.named_parameters() if p.requires_grad] == ["adapter.0.weight", "adapter.2.weight"]


def test_normalising_the_image_feature_first_changes_nothing():
    """The official code blends the raw CLIP feature; we cache it normalised. Same logits."""
    g = torch.Generator().manual_seed(1)
    d = 16
    w1, w2 = (
        torch.randn(d // 4, d, generator=g, dtype=torch.float64),
        torch.randn(d, d // 4, generator=g, dtype=torch.float64),
    )
    raw = 7.3 * torch.randn(5, d, generator=g, dtype=torch.float64)
    text = torch.randn(3, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        reference_logits(raw, w1, w2, text, 100.0),
        reference_logits(F.normalize(raw, dim=-1), w1, w2, text, 100.0),
        rtol=1e-12,
        atol=1e-10,
    )
