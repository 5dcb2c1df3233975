"""Paired bootstrap of the LoRA → full-FT gap, shared by both convergence reports.

Every test item (a review, a problem) of a run is a row [numerator, denominator]: [correct, 1]
for accuracy, [token-loss sum, answer-token count] for a token-mean loss. A method's metric over
any set of items is then a ratio of sums, so one resampling code serves both tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


def quantiles(x: torch.Tensor, lo: float, hi: float) -> list[float]:
    x = x[torch.isfinite(x)].sort().values
    return [float(x[int(q * (len(x) - 1))]) for q in (lo, hi)]


def gap_bootstrap(
    lora: dict[int, torch.Tensor],
    full: dict[int, torch.Tensor],
    pro: dict[int, torch.Tensor],
    n: int = 2000,
    seed: int = 0,
) -> dict:
    """Seed-pooled metric of LoRA, full FT and one LoRA-Pro method (each: seed → P×2 rows) over
    the seeds all three ran, and over `n` resamples of the test items, drawn within each seed
    (a seed may draw its own test items) and shared by the three methods (paired): the
    LoRA → full-FT gap and the method's difference from LoRA with 2.5–97.5% ranges, and its
    share of the gap with a 5–95% range."""
    per = {"lora": lora, "full": full, "pro": pro}
    seeds = sorted(set(lora) & set(full) & set(pro))
    g = torch.Generator().manual_seed(seed)
    idx = {s: torch.randint(0, len(lora[s]), (n, len(lora[s])), generator=g) for s in seeds}

    def value(m: str, boot: bool) -> torch.Tensor:
        tot = sum((per[m][s][idx[s]] if boot else per[m][s]).sum(-2) for s in seeds)
        return tot[..., 0] / tot[..., 1]

    point = {m: float(value(m, False)) for m in per}
    boot = {m: value(m, True) for m in per}
    gap, d = boot["full"] - boot["lora"], boot["pro"] - boot["lora"]
    share = (
        (point["pro"] - point["lora"]) / (point["full"] - point["lora"])
        if point["full"] != point["lora"]
        else float("nan")
    )
    return {
        "seeds": seeds,
        "value": point,
        "gap": {"point": point["full"] - point["lora"], "p025_p975": quantiles(gap, 0.025, 0.975)},
        "diff_vs_lora": {"point": point["pro"] - point["lora"], "p025_p975": quantiles(d, 0.025, 0.975)},
        "share": {"point": share, "p05_p95": quantiles(d / gap, 0.05, 0.95)},
    }


def at_chosen_lrs(work: Path, runs: list[dict], best: dict, rows: Callable[[Path, dict], torch.Tensor]) -> dict:
    """gap_bootstrap of each LoRA-Pro method over the seeds it, LoRA and full FT ran at their
    chosen LRs; `rows(work, run)` gives a run's P×2 test rows."""
    if "lora" not in best or "full" not in best:
        return {}
    per = {
        m: {r["seed"]: rows(work, r) for r in runs if r["method"] == m and r["lr"] == b["lr"] and r.get("test")}
        for m, b in best.items()
    }
    return {m: gap_bootstrap(per["lora"], per["full"], per[m]) for m in per if m.startswith("lorapro")}


def markdown(
    boot: dict, labels: dict[str, str], items: str, metric: str, scale: float = 1.0, digits: int = 4
) -> list[str]:
    """Table lines of `at_chosen_lrs`'s result; `scale` turns fractions into points (accuracy)."""

    def ci(x: dict, q: str) -> str:
        lo, hi = x[q]
        return f"{scale * x['point']:+.{digits}f} ({scale * lo:+.{digits}f} to {scale * hi:+.{digits}f})"

    lines = [
        "",
        f"Paired bootstrap over test {items} (resampled within each seed; the seeds pooled):",
        "",
        f"| method | seeds | LoRA → full-FT gap (95%) | {metric} − LoRA's (95%) | share of the gap closed (5–95%) |",
        "|---|---|---|---|---|",
    ]
    for m, b in boot.items():
        sh = b["share"]
        lines.append(
            f"| {labels[m]} | {b['seeds']} | {ci(b['gap'], 'p025_p975')} | {ci(b['diff_vs_lora'], 'p025_p975')} | "
            f"{100 * sh['point']:+.0f}% ({100 * sh['p05_p95'][0]:+.0f}% to {100 * sh['p05_p95'][1]:+.0f}%) |"
        )
    return lines
