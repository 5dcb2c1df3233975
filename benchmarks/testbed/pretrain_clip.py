"""Pretrain the testbed CLIP: a small `transformers.CLIPModel` on the caption world.

    accelerate launch --cpu --num_processes 1 --mixed_precision no benchmarks/testbed/pretrain_clip.py
    python benchmarks/testbed/pretrain_clip.py            # the same, without the launcher

Standard CLIP contrastive loss (`CLIPModel(..., return_loss=True)`), AdamW with
linear warm-up and cosine decay, a fixed budget of `--steps` batches, on the
package's shared training path (`hf_clipadapt.training.AdaptationTrainer`). Each batch is
rendered on the fly from the real MNIST / Fashion-MNIST *train* images with seed
`(seed, step, rank)`, so a run is a pure function of its arguments: the committed
checkpoint is reproduced by the defaults, single process, on CPU, with 2 threads
(about 17 min on 2 idle cores; other thread counts round differently).

Captions mostly name just the object: attributes are mentioned rarely (see the
`--p-*` options). Four objects are called by their everyday web names ("sweater",
"trainer", "3", "8"; `world.WEB_NAMES`), never by the label names that the
downstream suites use, so zero-shot with label names has a built-in, known gap
that labelled shots can close.

Pretraining sees only the seen (colour, object) combinations of the known
objects (see `hf_clipadapt.testbed.world`); the unknown objects and the
held-out pairs never appear. A fraction `--noisy-fraction` of each batch uses the
noisy rendering style.

The model, tokenizer and image processor are saved together with
`save_pretrained` into `--output-dir` (default: the package's checkpoint folder),
with a `training_log.json` that records the arguments, loss curve and wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hf_clipadapt.testbed import world as W
from hf_clipadapt.testbed.modeling import build_processor, pixel_values_from_uint8, testbed_clip_config
from hf_clipadapt.testbed.world import SceneWorld, pretraining_scenes

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "hf_clipadapt" / "testbed" / "checkpoint"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--noisy-fraction", type=float, default=0.125)
    p.add_argument("--threads", type=int, default=2)
    # How often a caption mentions each attribute. Every mention is one more way to
    # tell a caption apart from its in-batch negatives without looking at the shape:
    # at the first checkpoint's rates (colour 0.8, size 0.5, position and background
    # 0.4) the image tower learned colours and barely any shapes. With rare mentions
    # most captions name just the object, and the loss has to be solved by shape.
    p.add_argument("--p-object", type=float, default=0.95, help="probability that a caption names the object")
    p.add_argument("--p-colour", type=float, default=0.25, help="probability that a caption names the colour")
    p.add_argument("--p-size", type=float, default=0.1)
    p.add_argument("--p-position", type=float, default=0.1)
    p.add_argument("--p-background", type=float, default=0.1)
    p.add_argument(
        "--p-label-name",
        type=float,
        default=0.0,
        help="probability that a caption uses a dataset label name rather than its web name (world.WEB_NAMES)",
    )
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--vision-layers", type=int, default=4)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--snapshot-every", type=int, default=0, help="also save to --snapshot-dir every N steps")
    p.add_argument("--snapshot-dir", type=Path, default=None)
    p.add_argument("--save-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument(
        "--report-to", default=None, help="a Trainer tracker (report_to) for the loss curve, e.g. tensorboard, wandb"
    )
    return p.parse_args(argv)


def make_batch(world, tokenizer, processor, batch_size, noisy_fraction, seed, step, rank, caption_probs=None):
    n_noisy = int(round(batch_size * noisy_fraction))
    parts = [(batch_size - n_noisy, "clean", 0), (n_noisy, "noisy", 1)]
    images, captions = [], []
    for n, style, k in parts:
        if n == 0:
            continue
        scenes = pretraining_scenes(world, n, seed=[seed, step, rank, k], style=style)
        images.append(world.render(scenes))
        captions += world.captions(scenes, **(caption_probs or {}))
    pixel_values = pixel_values_from_uint8(np.concatenate(images), processor.image_mean, processor.image_std)
    text = tokenizer(captions, padding=True, return_tensors="pt")
    return {"pixel_values": pixel_values, "input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}


class _Batches(torch.utils.data.Dataset):
    """Item `step * world_size + rank` is the batch of that step for that rank, rendered on
    demand: with Trainer's sequential, sharded loader each rank renders only its own."""

    def __init__(self, args, world, tokenizer, processor, world_size: int):
        self.args, self.world, self.tokenizer, self.processor, self.world_size = (
            args,
            world,
            tokenizer,
            processor,
            world_size,
        )
        self.caption_probs = {
            k: getattr(args, k)
            for k in ("p_object", "p_colour", "p_size", "p_position", "p_background", "p_label_name")
        }

    def __len__(self):
        return self.args.steps * self.world_size

    def __getitem__(self, i):
        a = self.args
        step, rank = divmod(i, self.world_size)
        batch = make_batch(
            self.world,
            self.tokenizer,
            self.processor,
            a.batch_size,
            a.noisy_fraction,
            a.seed,
            step,
            rank,
            self.caption_probs,
        )
        return {**batch, "return_loss": True}


def _one_batch(rows):
    return rows[0]


def make_trainer(args, model, dataset, log: list):
    """An `AdaptationTrainer` with the script's recipe: AdamW (β 0.9, 0.98, ε 1e-6), weight decay on
    matrices other than embeddings, linear warm-up then cosine decay, clipping at 1, the logit
    scale clamped at log(100) after every step, a log entry every `--log-every` steps."""
    from transformers import CLIPProcessor, TrainerCallback

    from hf_clipadapt.training import AdaptationTrainer, AdaptationTrainingArguments

    class PretrainTrainer(AdaptationTrainer):
        def parameter_groups(self, model):
            decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
            no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
            return [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, lr_lambda)
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs)
            self.last_output = out
            return (out.loss, out) if return_outputs else out.loss

    def lr_lambda(step):
        if step < args.warmup:
            return (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    class StepEnd(TrainerCallback):
        def on_step_end(self, targs, state, control, model=None, **kwargs):
            step = state.global_step - 1
            with torch.no_grad():  # CLIP clamps the temperature at 100
                model.logit_scale.clamp_(0, math.log(100))
            if step % args.log_every == 0 or step == args.steps - 1:
                out = trainer.last_output
                with torch.no_grad():
                    acc = (out.logits_per_image.argmax(-1) == torch.arange(len(out.logits_per_image))).float().mean()
                entry = {
                    "step": step,
                    "loss": round(out.loss.item(), 4),
                    "batch_i2t_acc": round(acc.item(), 4),
                    "lr": trainer.lr_scheduler.get_last_lr()[0],
                    "elapsed_s": round(time.time() - t0, 1),
                }
                log.append(entry)
                if state.is_world_process_zero:
                    print(json.dumps(entry), flush=True)
            if args.snapshot_every and (step + 1) % args.snapshot_every == 0 and state.is_world_process_zero:
                snap = args.snapshot_dir / f"step{step + 1}"
                model.save_pretrained(snap)
                CLIPProcessor(image_processor=dataset.processor, tokenizer=dataset.tokenizer).save_pretrained(snap)

    targs = AdaptationTrainingArguments(
        max_steps=args.steps,
        per_device_train_batch_size=1,
        learning_rate=args.lr,
        optim="adamw_torch",
        adam_beta1=0.9,
        adam_beta2=0.98,
        adam_epsilon=1e-6,
        weight_decay=args.weight_decay,
        max_grad_norm=1.0,
        seed=args.seed,
        logging_steps=args.log_every,
        report_to=args.report_to or "none",
    )
    trainer = PretrainTrainer(
        model=model, args=targs, train_dataset=dataset, data_collator=_one_batch, callbacks=[StepEnd()]
    )
    t0 = time.time()
    return trainer


def main(argv=None):
    """Pretrain on the shared training path (`hf_clipadapt.training.AdaptationTrainer`);
    under `accelerate launch` every process renders and trains on its own batches."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import CLIPModel, CLIPProcessor, set_seed

    from hf_clipadapt.testbed.tokenization import build_testbed_tokenizer
    from hf_clipadapt.training import AdaptationTrainingArguments

    where = AdaptationTrainingArguments()
    world_size, say = where.world_size, (print if where.process_index == 0 else (lambda *a, **k: None))
    set_seed(args.seed)
    tokenizer = build_testbed_tokenizer()
    image_processor = build_processor()
    config = testbed_clip_config(
        vocab_size=len(tokenizer), patch_size=args.patch_size, vision_layers=args.vision_layers
    )
    model = CLIPModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"CLIPModel with {n_params / 1e6:.2f}M parameters")
    t_load = time.time()
    world = SceneWorld.from_offline("train")
    say(f"world loaded in {time.time() - t_load:.1f}s: {len(W.seen_combinations())} seen combinations")

    log: list[dict] = []
    trainer = make_trainer(args, model, _Batches(args, world, tokenizer, image_processor, world_size), log)
    t0 = time.time()
    trainer.train()
    wall = time.time() - t0
    if trainer.is_world_process_zero():
        unwrapped = model.eval()
        if args.save_dtype == "float16":
            unwrapped = unwrapped.half()
        args.output_dir.mkdir(parents=True, exist_ok=True)
        unwrapped.save_pretrained(args.output_dir)
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(args.output_dir)
        meta = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "output_dir"},
            "parameters": n_params,
            "train_wall_time_s": round(wall, 1),
            "world_load_s": round(t0 - t_load, 1),
            "samples_seen": args.steps * args.batch_size * trainer.args.world_size,
            "num_processes": trainer.args.world_size,
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "load_average_at_end": os.getloadavg(),
            "log": log,
        }
        (args.output_dir / "training_log.json").write_text(json.dumps(meta, indent=1))
        print(f"saved to {args.output_dir} after {wall / 60:.1f} min of training")
    return model


if __name__ == "__main__":
    main()
