"""benchmarks/lora_pro/gpu_check.py works before a GPU is lent: its --tiny CPU mode."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "lora_pro"))


def test_gpu_check_tiny_mode_writes_json_and_table(tmp_path):
    import gpu_check

    gpu_check.main(["--tiny", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["device"] == "cpu"
    methods = [r["method"] for r in data["results"]]
    assert methods == list(gpu_check.METHODS)
    for r in data["results"]:
        assert len(r["loss_curve"]) == 3 and all(x == x for x in r["loss_curve"])  # finite, one per step
        assert r["median_step_s"] > 0 and r["peak_memory_bytes"] is None
    by = {r["method"]: r for r in data["results"]}
    # full mode keeps m×n moments; the factored option (bf16 m, row/col v) keeps less
    assert by["lorapro-full"]["optimizer_state_bytes"] > by["lorapro-full-factored"]["optimizer_state_bytes"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| lorapro-efficient |" in table and "vs LoRA+AdamW" in table


def test_gpu_check_fsdp2_mode_runs_fully_shard_and_reports_per_rank(tmp_path):
    """--fsdp2 on one CPU rank (the world size comes from the environment; none here): the
    same code that shards over the GPUs when torchrun starts several ranks."""
    import gpu_check
    import torch.distributed as dist

    gpu_check.main(["--tiny", "--fsdp2", "--out", str(tmp_path)])
    assert not dist.is_initialized()  # it cleans up its process group
    data = json.loads((tmp_path / "gpu_check_fsdp2.json").read_text())
    assert [r["method"] for r in data["results"]] == list(gpu_check.METHODS)
    for r in data["results"]:
        assert r["world_size"] == 1 and r["rank"] == 0 and len(r["loss_curve"]) == 3
        assert all(x == x for x in r["loss_curve"])
    by = {r["method"]: r for r in data["results"]}
    assert by["lorapro-full"]["optimizer_state_bytes"] > by["lorapro-full-factored"]["optimizer_state_bytes"] > 0
    assert "| lorapro-full | 0 |" in (tmp_path / "gpu_check_fsdp2.md").read_text()
