"""The LoRA-Pro benchmark's ΔW and gap arithmetic (benchmarks/lora_pro/cls_report.py,
sft_report.py) and its per-problem SFT losses (convergence.py).

The ΔW-over-training curves compare a LoRA run's s·B·A with full fine-tuning's W − W0
matrix by matrix; if the two runs' weight names did not line up, the comparison would
quietly cover fewer matrices. These tests pin the naming and the arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "lora_pro"))
import bootstrap as B
import cls_report as R
import convergence as C


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(cfg)


def test_lora_and_full_snapshots_cover_the_same_matrices():
    base = _tiny_bert()
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    lora = C.wrap(_tiny_bert(), "cls", "lora", seed=0)
    for n, p in lora.named_parameters():  # PEFT starts B at 0: give it values so ΔW is not trivially 0
        if ".lora_B." in n:
            p.data.normal_()
    full = C.wrap(_tiny_bert(), "cls", "full", seed=0)
    with torch.no_grad():
        for p in full.parameters():
            p.add_(0.1)
    dw_lora = R.delta_w_of(C.adapted_weights(lora, "lora"), "lora", base_sd)
    dw_full = R.delta_w_of(C.adapted_weights(full, "full"), "full", base_sd)
    assert set(dw_lora) == set(dw_full)
    # q, k, v, attention output, intermediate, output, pooler: 7 matrices in one layer
    assert len(dw_lora) == 7 and all("embeddings" not in k and "classifier" not in k for k in dw_lora)
    for d in dw_full.values():
        torch.testing.assert_close(d, torch.full_like(d, 0.1), rtol=0, atol=1e-6)
    sd = C.adapted_weights(lora, "lora")
    a = next(n for n in sd if ".query.lora_A." in n)
    torch.testing.assert_close(
        dw_lora["bert.encoder.layer.0.attention.self.query.weight"],
        (16 / 8) * sd[a.replace("lora_A", "lora_B")] @ sd[a],
    )


def test_compare_against_hand_values():
    ref = {"w": torch.tensor([[3.0, 0.0], [0.0, 4.0]])}
    same = R.compare(ref, ref)
    assert (
        same["cosine"] == pytest.approx(1.0)
        and same["rel_distance"] == pytest.approx(0.0)
        and same["norm_ratio"] == pytest.approx(1.0)
    )
    doubled = R.compare({"w": 2 * ref["w"]}, ref)
    assert (
        doubled["cosine"] == pytest.approx(1.0)
        and doubled["norm_ratio"] == pytest.approx(2.0)
        and doubled["rel_distance"] == pytest.approx(1.0)
    )
    ortho = R.compare({"w": torch.tensor([[0.0, 5.0], [0.0, 0.0]])}, ref)
    assert ortho["cosine"] == pytest.approx(0.0) and ortho["rel_distance"] == pytest.approx(2**0.5)


def test_gap_shares_are_paired_by_seed():
    def stats(accs):
        return {"per_seed": {s: {"test_accuracy": a, "train_loss_end": 1.0 - a / 100} for s, a in accs.items()}}

    res = R.gap_over_seeds(
        {
            "lora": stats({0: 80.0, 1: 70.0}),
            "full": stats({0: 84.0, 1: 72.0}),
            "lorapro-full": stats({0: 82.0, 1: 71.5, 2: 99.0}),
        }
    )  # seed 2 has no LoRA/full pair
    g = res["lorapro-full"]
    assert g["seeds"] == [0, 1]
    assert g["test_accuracy"]["gap"]["mean"] == pytest.approx(3.0)
    assert g["test_accuracy"]["share"]["mean"] == pytest.approx((0.5 + 0.75) / 2)
    assert g["train_loss_end"]["share"]["mean"] == pytest.approx((0.5 + 0.75) / 2)


def test_per_problem_token_losses_pool_to_the_models_loss():
    """Right-padded causal-LM batch with prompt tokens masked (-100): the per-problem sums, pooled,
    are the model's own token-mean loss, and each equals a by-hand log-softmax sum."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=40,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=32,
        )
    ).eval()
    ids = torch.randint(1, 40, (3, 10))
    labels = ids.clone()
    labels[:, :4] = -100  # the prompt
    labels[1, 7:] = -100  # padding of a shorter problem
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    per = C.token_loss_sums(out.logits, labels)
    assert [k for _, k in per] == [6, 3, 6]
    assert sum(s for s, _ in per) / sum(k for _, k in per) == pytest.approx(float(out.loss), rel=1e-5)
    logp = out.logits.double().log_softmax(-1)
    by_hand = -sum(float(logp[1, t - 1, ids[1, t]]) for t in range(4, 7))
    assert per[1][0] == pytest.approx(by_hand, rel=1e-5)


def test_gap_bootstrap_pools_tokens_and_pairs_problems():
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)
    # Seed 0: every problem has the same per-token loss within a method, so every resample agrees.
    # Seed 1 has other problems (its own test draw) and more tokens in its second problem.
    lora = {0: t([[2.0, 1], [4.0, 2]]), 1: t([[2.0, 1], [6.0, 3], [2.0, 1]])}
    full = {0: t([[1.0, 1], [2.0, 2]]), 1: t([[1.0, 1], [3.0, 3], [1.0, 1]])}
    pro = {0: t([[1.5, 1], [3.0, 2]]), 1: t([[1.5, 1], [4.5, 3], [1.5, 1]]), 2: t([[9.0, 1]])}
    b = B.gap_bootstrap(lora, full, pro, n=200)
    assert b["seeds"] == [0, 1]  # seed 2 has no LoRA / full-FT pair
    assert b["value"] == pytest.approx({"lora": 2.0, "full": 1.0, "pro": 1.5})
    assert b["gap"]["point"] == pytest.approx(-1.0) and b["gap"]["p025_p975"] == pytest.approx([-1.0, -1.0])
    assert b["diff_vs_lora"]["point"] == pytest.approx(-0.5)
    assert b["share"]["point"] == pytest.approx(0.5) and b["share"]["p05_p95"] == pytest.approx([0.5, 0.5])
    # Token-weighted, not problem-weighted: (2 + 8) / 3 tokens in seed 0, not the mean of 2 and 4 per problem.
    lora[0] = t([[2.0, 1], [8.0, 2]])
    assert B.gap_bootstrap(lora, full, pro, n=50)["value"]["lora"] == pytest.approx(
        (2 + 8 + 2 + 6 + 2) / (1 + 2 + 1 + 3 + 1)
    )


def test_gap_bootstrap_resamples_problems_not_tokens():
    """Problems that disagree give a range around the point; resampling is paired, so a method
    that is LoRA plus a constant per token has a zero-width range for its difference."""
    torch.manual_seed(0)
    n_tok = torch.randint(1, 5, (40,)).double()
    lora = {0: torch.stack([n_tok * (1 + torch.rand(40).double()), n_tok], 1)}
    pro = {0: torch.stack([lora[0][:, 0] - 0.1 * n_tok, n_tok], 1)}
    full = {0: torch.stack([n_tok * torch.rand(40).double(), n_tok], 1)}
    b = B.gap_bootstrap(lora, full, pro, n=500)
    lo, hi = b["gap"]["p025_p975"]
    assert lo < b["gap"]["point"] < hi and hi - lo > 0.05
    assert b["diff_vs_lora"]["p025_p975"] == pytest.approx([-0.1, -0.1])


def test_accuracy_rows_bootstrap_to_accuracy_differences():
    """The classifier's [correct, 1] rows: the metric is accuracy, pooled over seeds by review."""
    rows = lambda hits: torch.stack(
        [torch.tensor(hits, dtype=torch.float64), torch.ones(len(hits), dtype=torch.float64)], 1
    )
    lora = {0: rows([1, 0, 1, 0]), 1: rows([1, 1, 0, 0])}
    full = {0: rows([1, 1, 1, 0]), 1: rows([1, 1, 1, 0])}
    pro = {0: rows([1, 1, 1, 0]), 1: rows([1, 1, 0, 0])}
    b = B.gap_bootstrap(lora, full, pro, n=300)
    assert b["value"] == pytest.approx({"lora": 0.5, "full": 0.75, "pro": 0.625})
    assert b["gap"]["point"] == pytest.approx(0.25) and b["share"]["point"] == pytest.approx(0.5)
    lo, hi = b["diff_vs_lora"]["p025_p975"]
    # pro ≥ LoRA on every review and ahead on one of eight: never below 0, at most 4 draws of it in 8.
    assert 0.0 <= lo < 0.125 < hi <= 0.5
