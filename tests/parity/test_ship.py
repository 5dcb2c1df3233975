"""Parity of SHIP's generator with its authors' code, in float64.

Reference re-derived from mrflogs/SHIP `main_coop_vae.py`:
* Encoder (L284-304): Linear(D, 2048) -> ReLU, then μ = Linear(2048, D), log σ² = Linear(2048, D).
* Generator (L306-318): Linear(D, 4096) -> ReLU -> Linear(4096, W) gives the bias r.
* weights_init (L36-43): Linear weights N(0, 0.02²), biases 0.
* PromptLearner (L215-277): 4 random context vectors (N(0, 0.02²)), "X X X X {name}.",
  prompts = [SOS, ctx + r, name, ".", EOS] per sample (L269-277), "_" read as space (L256).
* TextEncoder (L196-212): CLIP's text tower, EOS state @ text_projection; normalised (L390-391).
* run_vae_generator (L378-396): z = μ + σ·ε, ε ~ N(0, I); vae_loss (L279-282):
  Σ_d (x̃ − x)² averaged over the batch + KL averaged over the batch, weight 1.
* Optimisers (L360-362): AdamW lr 1e-3 (torch's default weight decay 0.01), no scheduler;
  50 epochs (L366); batch 256 (L462).
* Synthesis (L138-152): for every CoOp batch of B real features, B labels uniform over the
  new classes (L140), z ~ N(0, I) of the feature width (L141), decoded through each label's
  name (L143-149) and appended after the real features (L151-152).
The text tower reference is `reference_text_features` of tests/parity/test_coop.py,
repeated here (test files do not import each other).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.ship import SHIPGenerator
from hf_clipadapt.ship.functional import vae_loss
from hf_clipadapt.testing_utils import assert_close_scaled, tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

BASE = ["red", "sea_lion", "blue"]


def text_tower(text_model, projection, tokenizer, prompts_ctx, names):
    """[SOS, ctx_i, name_i, ".", EOS] through CLIP's causal transformer (float64), per sample i."""
    n_ctx = prompts_ctx.shape[-2]
    ids = [tokenizer(" ".join(["X"] * n_ctx) + " " + n.replace("_", " ") + ".")["input_ids"] for n in names]
    length, eos = max(len(i) for i in ids), tokenizer.eos_token_id
    ids = torch.tensor([i + [eos] * (length - len(i)) for i in ids])
    emb = text_model.embeddings.token_embedding.weight.double()[ids]
    x = torch.cat([emb[:, :1], prompts_ctx, emb[:, 1 + n_ctx :]], dim=1)
    x = x + text_model.embeddings.position_embedding.weight.double()[:length]
    for layer in text_model.encoder.layers:
        ln1, ln2, a = layer.layer_norm1, layer.layer_norm2, layer.self_attn
        h = F.layer_norm(x, x.shape[-1:], ln1.weight.double(), ln1.bias.double(), ln1.eps)
        b, n, w = h.shape
        q, k, v = (
            F.linear(h, p.weight.double(), p.bias.double()).view(b, n, a.num_heads, -1).transpose(1, 2)
            for p in (a.q_proj, a.k_proj, a.v_proj)
        )
        s = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(
            torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf")
        )
        x = x + F.linear(
            (s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w), a.out_proj.weight.double(), a.out_proj.bias.double()
        )
        h = F.linear(
            F.layer_norm(x, x.shape[-1:], ln2.weight.double(), ln2.bias.double(), ln2.eps),
            layer.mlp.fc1.weight.double(),
            layer.mlp.fc1.bias.double(),
        )
        x = x + F.linear(h * torch.sigmoid(1.702 * h), layer.mlp.fc2.weight.double(), layer.mlp.fc2.bias.double())
    ln = text_model.final_layer_norm
    x = F.layer_norm(x, x.shape[-1:], ln.weight.double(), ln.bias.double(), ln.eps)
    out = x[torch.arange(len(names)), (ids == eos).int().argmax(-1)] @ projection.weight.double().T
    return out / out.norm(dim=-1, keepdim=True)


def reference_vae_loss(recon, x, mean, log_var):
    rec = (recon - x).pow(2).sum(1).mean()
    kld = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1).mean()
    return rec + 1 * kld


@pytest.fixture
def generator():
    clip = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    return SHIPGenerator.from_clip(clip, BASE, encoder_hidden_dim=24, bias_hidden_dim=40)


def test_architecture_and_initialisation_follow_ship(generator):
    assert generator.config.latent_dim == generator.config.embed_dim and generator.config.n_ctx == 4
    for lin in [
        generator.encoder[0],
        generator.to_mu,
        generator.to_logvar,
        generator.bias_mlp[0],
        generator.bias_mlp[2],
    ]:
        assert torch.all(lin.bias == 0)
    assert isinstance(generator.encoder[1], torch.nn.ReLU) and isinstance(generator.bias_mlp[1], torch.nn.ReLU)
    assert abs(generator.bias_mlp[0].weight.std().item() - 0.02) < 0.006
    assert (SHIPGenerator.config_class().encoder_hidden_dim, SHIPGenerator.config_class().bias_hidden_dim) == (
        2048,
        4096,
    )


def test_vae_loss_matches_ship():
    g = torch.Generator().manual_seed(0)
    recon, x, mu, logvar = (torch.randn(5, 8, generator=g, dtype=torch.float64) for _ in range(4))
    loss, _, _ = vae_loss(recon, x, mu, logvar)
    torch.testing.assert_close(loss, reference_vae_loss(recon, x, mu, logvar), rtol=1e-14, atol=0)


def D(t):
    return t.detach().double()


def test_forward_loss_and_gradients_match_ship(generator):
    """The model runs in float32 (its forward casts features to float32); the reference in
    float64 on the same weights and the same ε: float32 tolerances (assert_close_scaled)."""
    gen = generator
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        gen.ctx.copy_(0.3 * torch.randn(gen.ctx.shape, generator=g))
    x = F.normalize(torch.randn(4, gen.config.embed_dim, generator=g, dtype=torch.float64), dim=-1)
    y = torch.tensor([0, 1, 2, 1])
    torch.manual_seed(7)
    out = gen(image_features=x.float(), labels=y)
    torch.manual_seed(7)  # the same ε: z = μ + σ·ε
    eps = torch.randn(4, gen.config.latent_dim).double()
    params = [gen.ctx, gen.encoder[0].weight, gen.to_logvar.weight, gen.bias_mlp[2].weight]
    refs = [D(p).requires_grad_(True) for p in params]
    ctx, w_enc, w_logvar, w_bias2 = refs
    h = torch.relu(F.linear(x, w_enc, D(gen.encoder[0].bias)))
    mean, log_var = F.linear(h, D(gen.to_mu.weight), D(gen.to_mu.bias)), F.linear(h, w_logvar, D(gen.to_logvar.bias))
    z = torch.exp(0.5 * log_var) * eps + mean
    bias = F.linear(
        torch.relu(F.linear(z, D(gen.bias_mlp[0].weight), D(gen.bias_mlp[0].bias))), w_bias2, D(gen.bias_mlp[2].bias)
    )
    prompts_ctx = ctx.unsqueeze(0) + bias.unsqueeze(1)  # L273-275
    recon = text_tower(
        gen.backbone.model.text_model,
        gen.backbone.model.text_projection,
        gen.backbone.tokenizer,
        prompts_ctx,
        [BASE[i] for i in y.tolist()],
    )
    ref = reference_vae_loss(recon, x, mean, log_var)
    assert_close_scaled(out.reconstruction, recon.detach().float())
    assert_close_scaled(out.loss, ref.detach().float())
    grads_ours = torch.autograd.grad(out.loss, params)
    grads_ref = torch.autograd.grad(ref, refs)
    for a, b in zip(grads_ours, grads_ref):
        assert_close_scaled(a, b.float(), rtol=1e-4)  # float32 backward through 2 text layers


def test_generate_decodes_standard_normal_z_through_the_new_names(generator):
    gen = generator
    feats, rows = gen.generate(["green", "golden_retriever"], n_per_class=2, seed=5)
    z = torch.randn(4, gen.config.latent_dim, generator=torch.Generator().manual_seed(5)).double()
    bias = F.linear(
        torch.relu(F.linear(z, D(gen.bias_mlp[0].weight), D(gen.bias_mlp[0].bias))),
        D(gen.bias_mlp[2].weight),
        D(gen.bias_mlp[2].bias),
    )
    want = text_tower(
        gen.backbone.model.text_model,
        gen.backbone.model.text_projection,
        gen.backbone.tokenizer,
        D(gen.ctx).unsqueeze(0) + bias.unsqueeze(1),
        ["green", "green", "golden_retriever", "golden_retriever"],
    )
    assert rows.tolist() == [0, 0, 1, 1]
    assert_close_scaled(feats, want.float())


def test_optimiser_follows_ship(generator):
    args = generator.training_arguments(num_samples=1000, seed=0)
    assert (args.learning_rate, args.weight_decay, args.per_device_train_batch_size) == (1e-3, 0.01, 256)
    assert str(args.optim).split(".")[-1].lower() == "adamw_torch"
    assert str(args.lr_scheduler_type).split(".")[-1].lower() == "constant"
    assert args.num_train_epochs == generator.passes(50)
    out = generator(
        image_features=F.normalize(torch.randn(2, generator.config.embed_dim), dim=-1), labels=torch.tensor([0, 2])
    )
    assert_close_scaled(out.loss, out.reconstruction_loss + out.kl)


def test_per_batch_synthesis_draws_and_decodes_as_ship(generator, monkeypatch):
    """`synthesis="per_batch"`: each batch the model trains on is its B real features followed
    by B features decoded from the (z, new class) pairs drawn for it, as SHIP's CoOp loop does
    (L138-152); the pairs are read back from the generator state each draw started from."""
    from hf_clipadapt.coop import CoOpForImageClassification
    from hf_clipadapt.ship import PerBatchSynthesis

    gen, new = generator, ["green", "golden_retriever"]
    names = BASE + new  # as SHIP's all_classnames: base, then new
    model = CoOpForImageClassification.from_clip(gen.backbone, names)
    with pytest.warns(UserWarning, match="not been fitted"):
        sampler = PerBatchSynthesis(model, gen, new)
    states, draw = [], PerBatchSynthesis.__call__

    def spy(self, n, rng, device=None):
        states.append((n, rng.get_state()))
        return draw(self, n, rng, device)

    monkeypatch.setattr(PerBatchSynthesis, "__call__", spy)
    seen = []
    model.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["image_features"], kw["labels"])), with_kwargs=True
    )
    g = torch.Generator().manual_seed(2)
    x = F.normalize(torch.randn(6, gen.config.embed_dim, generator=g), dim=-1)
    model.fit_features(
        x,
        torch.tensor([0, 1, 2] * 2),
        extra_features=sampler,
        args={"num_train_epochs": 1, "per_device_train_batch_size": 3},
    )
    assert len(seen) == len(states) == 2
    for (n, state), (features, labels) in zip(states, seen):
        rng = torch.Generator()
        rng.set_state(state)
        target = torch.randint(len(BASE), len(names), (n,), generator=rng)  # L140
        z = torch.randn(n, features.shape[1], generator=rng).double()  # L141
        bias = F.linear(
            torch.relu(F.linear(z, D(gen.bias_mlp[0].weight), D(gen.bias_mlp[0].bias))),
            D(gen.bias_mlp[2].weight),
            D(gen.bias_mlp[2].bias),
        )
        want = text_tower(
            gen.backbone.model.text_model,
            gen.backbone.model.text_projection,
            gen.backbone.tokenizer,
            D(gen.ctx).unsqueeze(0) + bias.unsqueeze(1),
            [names[t] for t in target.tolist()],
        )
        assert features.shape[0] == 2 * n and labels[n:].tolist() == target.tolist()
        assert all(torch.isclose(x, row, atol=1e-6).all(1).any() for row in features[:n]), "real features first"
        assert_close_scaled(features[n:], want.float())
