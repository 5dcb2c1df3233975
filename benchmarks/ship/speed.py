"""Training-step cost of CoOp and of SHIP's generator, as ratios to the bare text tower.

    python benchmarks/ship/speed.py [--rounds 15] [--threads 2]

Both methods cache image features, so a training step's cost is the text tower:
* CoOp step (forward over the K class prompts with the learned context, cross-entropy
  on a batch of cached image features, backward to the context, SGD step) against a bare
  `CLIPTextModel` forward+backward over the same K prompts (weights frozen, gradient
  taken to the token embeddings only, which is the least any prompt method must do);
* SHIP generator step (encoder, bias MLP, B per-sample prompts through the text tower,
  VAE loss, backward, AdamW step) against the bare text tower over the same B prompts.

Two text towers: the testbed CLIP's and a ViT-B/16-sized one (CLIPTextConfig
defaults: width 512, 12 layers; random weights, timing only). Rounds alternate the
measured step and its reference so that machine load hits both alike; medians and
their ratio are reported. Writes `speed.json` next to this script.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.ship import SHIPGenerator
from hf_clipadapt.testbed import load_testbed_clip
from hf_clipadapt.testing_utils import tiny_clip_tokenizer, tiny_image_processor

HERE = Path(__file__).resolve().parent


def clip_b16_text_sized() -> CLIPBackbone:
    """Random CLIP with ViT-B/16's text tower (timing only) and a tiny vision tower."""
    config = CLIPConfig(
        text_config=dict(vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=1,
            image_size=30,
            patch_size=15,
        ),
        projection_dim=512,
    )
    torch.manual_seed(0)
    return CLIPBackbone(CLIPModel(config).eval(), tiny_clip_tokenizer(), tiny_image_processor())


def bare_text_step(clip: CLIPBackbone, input_ids: torch.Tensor):
    """A closure: frozen text tower forward over `input_ids` + backward to the token embeddings."""
    text = clip.model.text_model
    projection = clip.model.text_projection
    embedding = text.embeddings.token_embedding

    def step():
        embeds = embedding(input_ids).detach().requires_grad_(True)
        handle = embedding.register_forward_hook(lambda module, args, out: embeds)
        try:
            pooled = text(input_ids=input_ids).pooler_output
        finally:
            handle.remove()
        F.normalize(projection(pooled), dim=-1).sum().backward()

    return step


def optimizer_step(model, optimizer, x, y):
    """A closure: one training step of `model` (its loss on features `x`, labels `y`)."""

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(image_features=x, labels=y).loss.backward()
        optimizer.step()

    return step


def feature_batch(clip: CLIPBackbone, num_classes: int, batch: int):
    """Seeded unit-norm stand-ins for cached image features, and labels."""
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(batch, clip.embed_dim, generator=g), dim=-1)
    return x, torch.randint(0, num_classes, (batch,), generator=g)


def coop_step(clip: CLIPBackbone, names: list[str], batch: int):
    model = CoOpForImageClassification.from_clip(clip, names).train()
    optimizer = torch.optim.SGD([model.prompt_learner.ctx], lr=2e-3, momentum=0.9)
    # the same prompts, "X X X X {class}.", for the bare reference
    ids = model.prompt_learner.text_encoder.tokenize_classnames(names, model.config.n_ctx, ".").input_ids
    return optimizer_step(model, optimizer, *feature_batch(clip, len(names), batch)), ids


def ship_step(clip: CLIPBackbone, names: list[str], batch: int):
    generator = SHIPGenerator.from_clip(clip, names).train()
    optimizer = torch.optim.AdamW([p for p in generator.parameters() if p.requires_grad], lr=1e-3)
    x, y = feature_batch(clip, len(names), batch)
    return optimizer_step(generator, optimizer, x, y), generator.class_tokens(names).input_ids[y]


def median_seconds(steps: dict, rounds: int) -> dict:
    for step in steps.values():  # warm-up
        step()
    samples = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(clip: CLIPBackbone, label: str, args) -> dict:
    names = [f"class {chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(args.classes)]
    coop, coop_ids = coop_step(clip, names, args.batch)
    ship, ship_ids = ship_step(clip, names, args.ship_batch)
    times = median_seconds(
        {
            "coop_step": coop,
            "bare_text_coop": bare_text_step(clip, coop_ids),
            "ship_step": ship,
            "bare_text_ship": bare_text_step(clip, ship_ids),
        },
        args.rounds,
    )
    return dict(
        tower=label,
        classes=args.classes,
        ship_batch=args.ship_batch,
        median_seconds=times,
        coop_ratio=times["coop_step"] / times["bare_text_coop"],
        ship_ratio=times["ship_step"] / times["bare_text_ship"],
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--classes", type=int, default=64, help="K class prompts per CoOp step")
    p.add_argument("--batch", type=int, default=32, help="cached image features per CoOp step")
    p.add_argument("--ship-batch", type=int, default=64, help="samples (prompts) per SHIP generator step")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [
        measure(load_testbed_clip(), "testbed (width 128, 3 layers)", args),
        measure(clip_b16_text_sized(), "ViT-B/16 text (512, 12 layers)", args),
    ]
    out = dict(
        settings=vars(args), machine=platform.processor() or platform.machine(), torch=torch.__version__, rows=rows
    )
    (HERE / "speed.json").write_text(json.dumps(out, indent=1))
    for r in rows:
        print(
            f"{r['tower']:22s} CoOp step / bare text fwd+bwd: {r['coop_ratio']:.2f}   "
            f"SHIP step / bare text fwd+bwd: {r['ship_ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
