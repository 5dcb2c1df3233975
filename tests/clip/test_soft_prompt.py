import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone, PromptLearner, SoftPromptTextEncoder
from hf_clipadapt.testing_utils import assert_close_scaled, tiny_clip_model

CLASSNAMES = ["cat", "golden retriever", "x", "a very long class name with many words"]


def reference_features(model, tokenizer, texts):
    """get_text_features one text at a time (no padding), normalised: the ground truth."""
    rows = [model.get_text_features(**tokenizer(t, return_tensors="pt")).pooler_output[0] for t in texts]
    return F.normalize(torch.stack(rows), dim=-1)


@pytest.fixture
def encoder(tiny_clip, tiny_tokenizer):
    return SoftPromptTextEncoder(CLIPBackbone(tiny_clip, tiny_tokenizer))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_real_word_context_reproduces_get_text_features(attn, tiny_tokenizer):
    model = tiny_clip_model(attn_implementation=attn)
    encoder = SoftPromptTextEncoder(model, tiny_tokenizer)
    context = encoder.init_context_from_text("a photo of a")
    got = encoder(context, CLASSNAMES)
    expected = reference_features(model, tiny_tokenizer, [f"a photo of a {c}." for c in CLASSNAMES])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_legacy_eos_token_id_2_pools_like_transformers():
    # Pre-#24773 configs say eos_token_id=2 and pool at the highest token id, which is
    # EOS when EOS is the last vocabulary entry (as in OpenAI's vocab). Rebuild that setup.
    from transformers import CLIPTokenizer

    from hf_clipadapt.testing_utils import tiny_clip_vocab

    symbols = [s for s in tiny_clip_vocab() if not s.startswith("<|")]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    model = tiny_clip_model()
    model.text_model.eos_token_id = model.text_model.config.eos_token_id = 2
    encoder = SoftPromptTextEncoder(model, tokenizer)
    got = encoder(encoder.init_context_from_text("a photo of a"), CLASSNAMES)
    expected = reference_features(model, tokenizer, [f"a photo of a {c}." for c in CLASSNAMES])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_padding_in_a_batch_changes_nothing(encoder):
    context = torch.randn(4, encoder.width) * 0.02
    batched = encoder(context, CLASSNAMES)
    alone = torch.cat([encoder(context, [c]) for c in CLASSNAMES])
    assert_close_scaled(batched, alone, rtol=1e-5)  # other batch shapes run other GEMM kernels
    tokens = encoder.tokenize_classnames(CLASSNAMES, 4)
    lengths = (tokens.input_ids != encoder.tokenizer.pad_token_id).sum(1)
    assert len(set(tokens.eos_positions.tolist())) == len(CLASSNAMES)  # different lengths really were padded
    assert (tokens.eos_positions == lengths).all()  # EOS is the first pad-id token, right after the name


def test_class_specific_context_equal_to_shared_when_broadcast(encoder):
    context = torch.randn(4, encoder.width) * 0.02
    shared = encoder(context, CLASSNAMES)
    per_class = context.expand(len(CLASSNAMES), -1, -1).clone()
    assert_close_scaled(encoder(per_class, CLASSNAMES), shared, rtol=1e-5)
    # Changing one class's context changes only that class. (A random change: a constant
    # offset would vanish, since every LayerNorm removes the per-token mean.)
    per_class[1] += 0.5 * torch.randn(4, encoder.width)
    changed = encoder(per_class, CLASSNAMES)
    assert not torch.allclose(changed[1], shared[1], atol=1e-4)
    assert_close_scaled(changed[[0, 2, 3]], shared[[0, 2, 3]], rtol=1e-5)


def test_per_sample_context_gives_one_classifier_per_sample(encoder):
    contexts = torch.randn(3, 1, 4, encoder.width) * 0.02  # B=3, broadcast over K
    got = encoder(contexts, CLASSNAMES)
    assert got.shape == (3, len(CLASSNAMES), 16)
    for b in range(3):
        assert_close_scaled(got[b], encoder(contexts[b, 0], CLASSNAMES), rtol=1e-5)


def test_gradients_reach_context_and_not_clip(encoder):
    context = torch.zeros(4, encoder.width, requires_grad=True)
    encoder.requires_grad_(False)
    encoder(context, CLASSNAMES)[:, 0].sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_tokens_and_init(encoder, tiny_tokenizer):
    tokens = encoder.tokenize_classnames(["cat"], n_ctx=3)
    decoded = tiny_tokenizer.decode(tokens.input_ids[0], skip_special_tokens=True).replace(" ", "")
    assert decoded == "xxxcat."  # CoOp's "X X X cat." (the tiny vocab is lower-case, char level)
    assert tokens.ctx_start == 1 and tokens.input_ids[0, 0] == tiny_tokenizer.bos_token_id
    init = encoder.init_context_from_text("a photo of a")
    ids = tiny_tokenizer("a photo of a", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(init, encoder.token_embedding.weight[ids])
    rand = encoder.init_context_random(16, 5, generator=torch.Generator().manual_seed(0))
    assert rand.shape == (5, 16, encoder.width)
    assert rand.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize(
    "context, match",
    [
        (torch.zeros(32), "must be a tensor"),
        (torch.zeros(4, 31), "W=31"),
        (torch.zeros(3, 4, 32), "3 rows but there are 4 classes"),
    ],
)
def test_context_shape_errors(encoder, context, match):
    with pytest.raises(ValueError, match=match):
        encoder(context, CLASSNAMES)


def test_mismatched_prepared_tokens_and_bad_n_ctx(encoder):
    tokens = encoder.tokenize_classnames(CLASSNAMES, 4)
    with pytest.raises(ValueError, match="tokenised for n_ctx=4"):
        encoder(torch.zeros(5, encoder.width), tokens)
    with pytest.raises(ValueError, match="no room"):
        encoder.tokenize_classnames(CLASSNAMES, 75)
    with pytest.raises(ValueError, match="n_ctx must be a positive"):
        encoder.tokenize_classnames(CLASSNAMES, 0)
    with pytest.raises(ValueError, match="duplicate"):
        encoder.tokenize_classnames(["a", "a"], 4)


def test_rejects_non_clip_text_towers(tiny_tokenizer):
    with pytest.raises(TypeError, match="text_projection"):
        SoftPromptTextEncoder(torch.nn.Linear(2, 2), tiny_tokenizer)
    with pytest.raises(ValueError, match="tokenizer"):
        SoftPromptTextEncoder(tiny_clip_model())


def test_prompt_learner_defaults_to_a_photo_of_a(tiny_clip, tiny_tokenizer):
    backbone = CLIPBackbone(tiny_clip, tiny_tokenizer)
    learner = PromptLearner(backbone, CLASSNAMES[:2])
    assert [n for n, p in learner.named_parameters() if p.requires_grad] == ["ctx"]
    assert learner.ctx.dtype == torch.float32
    torch.testing.assert_close(learner(), backbone.zero_shot_classifier(CLASSNAMES[:2]), atol=1e-5, rtol=0)


def test_prompt_learner_random_class_specific_and_shift(encoder):
    learner = PromptLearner(encoder, CLASSNAMES, n_ctx=16, ctx_init=None, class_specific=True)
    assert learner.ctx.shape == (4, 16, encoder.width)
    shift = torch.randn(2, 1, 16, encoder.width) * 0.02  # e.g. SHIP's per-sample bias
    assert_close_scaled(learner(shift)[1], encoder(learner.ctx + shift[1], CLASSNAMES), rtol=1e-5)
    with pytest.raises(ValueError, match="n_ctx=4.*ctx_init=None|pass n_ctx="):
        PromptLearner(encoder, CLASSNAMES, n_ctx=4, ctx_init="a photo of a")


def test_prompt_learner_trains(encoder):
    # A few Adam steps on ctx alone must fit a CoOp-style cross-entropy on fixed "images".
    torch.manual_seed(0)
    images = F.normalize(torch.randn(8, 16), dim=-1)
    labels = torch.arange(8) % 4
    learner = PromptLearner(encoder, CLASSNAMES, n_ctx=4, ctx_init=None)
    optimizer = torch.optim.Adam(learner.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(20 * images @ learner().t(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is None for n, p in learner.named_parameters() if n != "ctx")


def test_low_precision_model_with_fp32_context(tiny_tokenizer):
    model = tiny_clip_model().to(torch.bfloat16)
    learner = PromptLearner(SoftPromptTextEncoder(model, tiny_tokenizer), CLASSNAMES[:2])
    out = learner()
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert learner.ctx.grad.dtype == torch.float32
