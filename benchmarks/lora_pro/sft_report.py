#!/usr/bin/env python
"""Report of the SFT convergence runs (convergence.py, task sft: SmolLM2-135M-Instruct on
gsm_symbolic worked solutions): every run's validation and test token loss, the run each method
chooses on validation, the share of the LoRA → full-FT gap that LoRA-Pro closes (test loss and
end-of-training loss), with a paired bootstrap over test problems (stratified by seed: each seed
draws its own test problems), and the loss-against-LR view with every method on one axis.

    python benchmarks/lora_pro/sft_report.py --work /tmp/lora_pro_convergence

Writes sft_results.json, sft_table.md and sft_lr_sweep.png next to this file. Selection reads
validation only; every run's test loss is recorded so that the equal-LR view can be drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bootstrap as B
import cls_report as R
import convergence as C


@torch.no_grad()
def problem_losses(work: Path, run: dict) -> torch.Tensor:
    """Each test problem's [token-loss sum, answer-token count] for a run (float64, P×2): from its
    record, or, for runs recorded before convergence.py kept them, recomputed from the saved
    weights (cached in the work folder). Either way the ratio of the sums must give back the
    recorded test loss, which checks that the right weights and problems were used."""
    per = run["test"].get("per_example")
    if per is None:
        name = C.run_name("sft", run["method"], run["lr"], run["seed"])
        cache = work / f"problem_losses_{name}.json"
        if not cache.exists():
            model, tok, splits = C.restore_run(work, run)
            cache.write_text(
                json.dumps(
                    C.evaluate(model, "sft", splits["test"], C.collate("sft", tok), 8, per_example=True)["per_example"]
                )
            )
        per = json.loads(cache.read_text())
    t = torch.tensor(per, dtype=torch.float64)
    pooled, recorded = float(t[:, 0].sum() / t[:, 1].sum()), run["test"]["loss"]
    if abs(pooled - recorded) > 1e-3 * recorded:  # two float32 reductions of one loss: ~1e-5 apart
        raise ValueError(
            f"{run['method']} lr {run['lr']:g} seed {run['seed']}: per-problem losses give {pooled:.6f}, the record {recorded:.6f}"
        )
    return t


def markdown(res: dict) -> str:
    lines = [
        "| method | LR | seed | val loss | test loss | train loss, last 40 steps | median s/step (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(C.METHODS)}
    for r in sorted(res["runs"], key=lambda r: (order[r["method"]], r["lr"], r["seed"])):
        t = f"{r['test']['loss']:.4f}" if r.get("test") else "-"
        lines.append(
            f"| {C.LABELS[r['method']]} | {r['lr']:g} | {r['seed']} | {r['val']['loss']:.4f} | {t} | "
            f"{r['train_loss_end']:.4f} | {r['median_step_s']:.1f} |"
        )
    lines += ["", "| method | chosen LR (validation) | bracketed | val loss | test loss |", "|---|---|---|---|---|"]
    for m, c in res["chosen"].items():
        lines.append(
            f"| {C.LABELS[m]} | {c['lr']:g} | {c['bracketed']} | {c['val']['loss']:.4f} | {c['test']['loss']:.4f} |"
        )
    if res.get("seeds_at_chosen_lr"):
        lines += [
            "",
            "| method | LR | seeds | test loss mean ± std | train loss, last 40 steps |",
            "|---|---|---|---|---|",
        ]
        for m, st in res["seeds_at_chosen_lr"].items():
            a, t = st["test_loss"], st["train_loss_end"]
            lines.append(
                f"| {C.LABELS[m]} | {st['lr']:g} | {a['n']} | {a['mean']:.4f} ± {R.fmt(a['std'], 4)} | {t['mean']:.4f} ± {R.fmt(t['std'], 4)} |"
            )
    if res.get("gap_over_seeds"):
        lines += [
            "",
            "| method | metric | LoRA → full-FT gap | method − LoRA | share of the gap closed |",
            "|---|---|---|---|---|",
        ]
        for m, g in res["gap_over_seeds"].items():
            for key, label in (("test_loss", "test loss"), ("train_loss_end", "train loss, last 40 steps")):
                x = g[key]
                sh = (
                    "n/a"
                    if x["share"] is None
                    else f"{100 * x['share']['mean']:+.0f}%"
                    + (f" ± {100 * x['share']['std']:.0f}%" if x["share"]["std"] is not None else "")
                )
                lines.append(
                    f"| {C.LABELS[m]} | {label} ({len(g['seeds'])} seed(s)) | {x['gap']['mean']:+.4f} ± {R.fmt(x['gap']['std'], 4)} | "
                    f"{x['diff_vs_lora']['mean']:+.4f} ± {R.fmt(x['diff_vs_lora']['std'], 4)} | {sh} |"
                )
    if res.get("bootstrap"):
        lines += B.markdown(res["bootstrap"], C.LABELS, "problems", "test loss")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/lora_pro_convergence")
    a = p.parse_args(argv)
    runs = [r for r in R.load_runs(Path(a.work), "sft") if r["method"] in C.METHODS]
    best, res = R.summarize(runs, "sft", gap_keys=("test_loss", "train_loss_end"))
    torch.set_num_threads(1)
    res["bootstrap"] = B.at_chosen_lrs(Path(a.work), runs, best, problem_losses)
    for r in [*res["runs"], *res["chosen"].values()]:  # the per-problem values stay in the raw run records
        if r.get("test"):
            r["test"] = {k: v for k, v in r["test"].items() if k != "per_example"}
    (HERE / "sft_results.json").write_text(json.dumps(res, indent=1))
    (HERE / "sft_table.md").write_text(markdown(res))
    R.plots(runs, best, metric="loss", ylabel="held-out token loss", smooth=9, name="sft_lr_sweep.png")
    print(markdown(res))


if __name__ == "__main__":
    main()
