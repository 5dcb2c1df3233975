"""One rank of the FSDP2 tests (launched by lorapro_dist.launch; test_fsdp2.py reads what it writes).

Per mode (full, efficient, factored): a tiny PEFT MLP wrapped with
torch.distributed.fsdp.fully_shard on a CPU mesh, LoRA-Pro on this rank's half of each
global batch for STEPS steps; then the same run stopped after HALF steps, its optimizer
state saved and loaded back through torch.distributed.checkpoint into a fresh model and
optimizer, and continued: through torch.distributed.checkpoint.state_dict's
get/set_optimizer_state_dict, which Accelerate's FSDP2 checkpoints (and so Trainer's) use,
sharded (SHARDED_STATE_DICT) and whole (FULL_STATE_DICT, Trainer's default). Writes, per rank and mode: the final parameters (whole), the
bytes of optimizer state this rank holds, and the resumed run's final parameters.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from lorapro_helpers import llama_batch, make_llama_peft, make_mlp_peft, mlp_batch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from hf_clipadapt.lora_pro import LoraProAdamW
from hf_clipadapt.lora_pro.sharded import local_nbytes

STEPS, HALF, GLOBAL_BATCH, LR = 6, 3, 16, 1e-2
LLAMA_STEPS = 4
MODES = {
    "full": dict(mode="full"),
    "efficient": dict(mode="efficient"),
    "factored": dict(mode="full", factored=True, moment_dtype=torch.bfloat16),
}


def make_optimizer(model, mode):
    return LoraProAdamW(model, lr=LR, weight_decay=0.01, **MODES[mode])


def shard(model, mesh):
    for i in (0, 2):  # one FSDP group per adapted layer, the rest in the root's
        fully_shard(model.base_model.model[i], mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def built_before_wrapping(mode, mesh):
    """The optimizer built on the plain model, then fully_shard and accelerate's own swap of
    the sharded parameters into param_groups (what Trainer + Accelerate do with FSDP2)."""
    from accelerate.utils.fsdp_utils import fsdp2_switch_optimizer_parameters

    model = make_mlp_peft(dtype=torch.float32)
    opt = make_optimizer(model, mode)
    old = {n: p for n, p in model.named_parameters()}
    for group in opt.param_groups:  # accelerate drops its references the same way, keyed by data_ptr
        for i, p in enumerate(group["params"]):
            group["params"][i] = torch.empty(1)
            group["params"][i].data_ptr = p.data_ptr()
    shard(model, mesh)
    mapping = {old[n].data_ptr(): p for n, p in model.named_parameters()}
    fsdp2_switch_optimizer_parameters(opt, mapping)
    return model, opt


def train(model, opt, start, stop, rank, world):
    per = GLOBAL_BATCH // world
    for i in range(start, stop):
        x, y = mlp_batch(i, torch.float32, n=GLOBAL_BATCH)
        loss = nn.functional.mse_loss(model(x[rank * per : (rank + 1) * per]), y[rank * per : (rank + 1) * per])
        loss.backward()
        opt.step()
        opt.zero_grad()


def whole(model):
    return {n: p.full_tensor().detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def state_bytes(opt):
    """{"<parameter name>/<state key>": bytes this rank holds}."""
    return {f"{opt._names[id(p)]}/{k}": local_nbytes(v) for p, st in opt.state.items() for k, v in st.items()}


def _local(t):
    return t.to_local() if hasattr(t, "to_local") else t


def same_state(a, b):
    return a["state"].keys() == b["state"].keys() and all(
        torch.equal(_local(v), _local(b["state"][n][k])) for n, st in a["state"].items() for k, v in st.items()
    )


def resumed(mode, mesh, rank, world, ckpt):
    model = shard(make_mlp_peft(dtype=torch.float32), mesh)
    opt = make_optimizer(model, mode)
    train(model, opt, 0, HALF, rank, world)
    before = opt.state_dict()
    dcp.save(
        {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, opt)}, checkpoint_id=ckpt
    )
    fresh = shard(make_mlp_peft(dtype=torch.float32, seed=1), mesh)  # other initial weights: all must come back
    fresh_opt = make_optimizer(fresh, mode)
    train(fresh, fresh_opt, 0, 1, rank, world)  # and other moments
    target = {"model": get_model_state_dict(fresh), "optimizer": get_optimizer_state_dict(fresh, fresh_opt)}
    dcp.load(target, checkpoint_id=ckpt)
    set_model_state_dict(fresh, target["model"])
    set_optimizer_state_dict(fresh, fresh_opt, target["optimizer"])
    exact = same_state(before, fresh_opt.state_dict())
    # Trainer's default fsdp_config state_dict_type, FULL_STATE_DICT: whole tensors, sharded again on load
    full = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
    again = make_optimizer(model, mode)
    set_optimizer_state_dict(model, again, full, options=StateDictOptions(full_state_dict=True))
    exact = exact and same_state(before, again.state_dict())
    train(fresh, fresh_opt, HALF, STEPS, rank, world)
    return whole(fresh), exact


def llama_run(mesh, rank, world, steps=LLAMA_STEPS):
    """A tiny Llama with tied embeddings and GQA, every decoder block and the root sharded (as
    Accelerate's FSDP2 plugin wraps a causal LM), trained in full mode on this rank's rows."""
    model = make_llama_peft()
    for layer in model.base_model.model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = LoraProAdamW(model, lr=LR, weight_decay=0.01, mode="full")
    train_llama(model, opt, steps, rank, world)
    return whole(model)


def train_llama(model, opt, steps, rank, world):
    for i in range(steps):
        batch = {k: v.chunk(world)[rank] for k, v in llama_batch(i).items()}
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()


def refusals(mesh, world):
    """What LoRA-Pro refuses under sharding, with its message: a mix of sharded and plain
    trainable parameters, and HSDP's 2-D mesh (Replicate, Shard(0))."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    from hf_clipadapt.lora_pro.sharded import shard_spec

    hsdp = init_device_mesh("cpu", (1, world), mesh_dim_names=("replicate", "shard"))
    cases = {
        "mixed": [distribute_tensor(torch.zeros(4, 3), mesh, [Shard(0)]), torch.zeros(2)],
        "hsdp": [distribute_tensor(torch.zeros(4, 3), hsdp, [Replicate(), Shard(0)])],
    }
    out = {}
    for name, params in cases.items():
        try:
            shard_spec(params)
            out[name] = ""
        except TypeError as e:
            out[name] = str(e)
    return out


def main(out_dir):
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=os.environ["LORAPRO_STORE"], rank=rank, world_size=world)
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (world,))
    result = {}
    for mode in MODES:
        model, opt = built_before_wrapping(mode, mesh)
        train(model, opt, 0, STEPS, rank, world)
        params, nbytes = whole(model), state_bytes(opt)
        again, exact = resumed(mode, mesh, rank, world, os.path.join(out_dir, f"ckpt_{mode}"))
        result[mode] = {"params": params, "state_bytes": nbytes, "resumed": again, "state_round_trip_exact": exact}
    result["llama"] = llama_run(mesh, rank, world)
    result["refusals"] = refusals(mesh, world)
    torch.save({"world": world, "rank": rank, "result": result}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
