"""DDP through Accelerate (2 CPU processes, gloo) equals one process on the same
global batch: LoRA-Pro's closed form and Adam act on the all-reduced gradients."""

import torch
from accelerate import Accelerator
from lorapro_helpers import make_mlp_peft, mlp_batch
from torch import nn

from hf_clipadapt import LoraProAdamW
from hf_clipadapt.testing_utils import run_distributed

STEPS, GLOBAL_BATCH = 3, 16


def _train(model, opt, backward, rank, world):
    per_rank = GLOBAL_BATCH // world
    for i in range(STEPS):
        x, y = mlp_batch(i, torch.float64, n=GLOBAL_BATCH)
        x, y = x[rank * per_rank : (rank + 1) * per_rank], y[rank * per_rank : (rank + 1) * per_rank]
        loss = nn.functional.mse_loss(model(x), y)
        backward(loss)
        opt.step()
        opt.zero_grad()


def _worker(mode, out_path):
    accelerator = Accelerator()  # debug_launcher's environment selects CPU + gloo
    # After Accelerator(), which raises the thread count to 2: a forked child must
    # not use the OpenMP pool its parent already started (it would hang).
    torch.set_num_threads(1)
    model = accelerator.prepare_model(make_mlp_peft(dtype=torch.float64))
    # built on the DDP-wrapped model: names must still be the unwrapped ones
    opt = accelerator.prepare_optimizer(LoraProAdamW(model, lr=1e-2, mode=mode))
    _train(model, opt, accelerator.backward, accelerator.process_index, accelerator.num_processes)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        torch.save(
            {
                "params": {n: p.detach() for n, p in unwrapped.named_parameters() if p.requires_grad},
                "state_names": sorted(opt.state_dict()["state"]),
                "world": accelerator.num_processes,
            },
            out_path,
        )


def test_two_process_ddp_equals_one_process_same_global_batch(tmp_path):
    for mode in ("full", "efficient"):
        out = tmp_path / f"ddp_{mode}.pt"
        run_distributed(_worker, args=(mode, str(out)), num_processes=2)
        ddp = torch.load(out, weights_only=True)
        assert ddp["world"] == 2

        model = make_mlp_peft(dtype=torch.float64)
        opt = LoraProAdamW(model, lr=1e-2, mode=mode)
        # no Accelerator here: its state singleton would leak into the forked workers
        _train(model, opt, torch.Tensor.backward, 0, 1)
        single = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        assert ddp["params"].keys() == single.keys()
        assert ddp["state_names"] == sorted(opt.state_dict()["state"])
        for n, p in single.items():
            torch.testing.assert_close(ddp["params"][n], p, rtol=1e-9, atol=1e-12, msg=n)
