"""Run README.md's Python blocks on the testbed, offline, as a newcomer would paste them.

The blocks run in order in one namespace (later blocks use `ds` and `clip` from the
GDA block), in the current directory. Before running, the text of each block is
rewritten by `SUBSTITUTIONS`, the one documented mechanism that maps the README onto
the offline testbed and small settings: Hub ids become the testbed, `push_to_hub`
becomes a local `save_pretrained` under the same name (so the `from_pretrained("me/...")`
lines load that folder), and long schedules become short ones. Every pair must match
the README (an unused pair is an error), so the table cannot drift from the text.
`SIZE_SUBSTITUTIONS` are the ones that only shrink the settings; `--full_size` keeps
the README's own sizes.

    python tests/readme_blocks.py --workdir /tmp/readme [--blocks gda,ship] [--full_size]

prints one JSON line: the block titles run and, per block, what the test checks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# (README text, what runs instead): the README on the offline testbed.
SUBSTITUTIONS = [
    (
        'ds = load_dataset("tanganke/eurosat")',
        'from hf_clipadapt.testbed import load_suite; ds = load_suite("few_shot", seed=0)',
    ),
    ('"openai/clip-vit-base-patch16"', '"testbed"'),
    ('get_templates("eurosat")', 'get_templates("testbed")'),
    ('record_as="eurosat"', 'record_as="testbed:few_shot"'),
    (".push_to_hub(", ".save_pretrained("),  # a local folder named like the Hub repo
    # MiniLM is not on the testbed: a tiny BERT of the same architecture stands in (the real
    # MiniLM offline: `make assets`, then the examples' --offline_minilm).
    ('model_id = "sentence-transformers/all-MiniLM-L6-v2"', 'model_id = tiny_bert("tiny-bert")'),
    # SFDA: a tiny random Swin on 10 testbed classes; the block's data names are bound by sfda_testbed().
    (
        'model = SFDAForImageClassification.from_backbone("microsoft/swin-base-patch4-window7-224", num_labels=10)',
        "source, target, target_test = sfda_testbed()\n"
        'model = SFDAForImageClassification.from_backbone(tiny_swin("tiny-swin"), num_labels=10)',
    ),
    (
        'data = load_xlsa17("xlsa17/data/AWA2")',
        "from hf_clipadapt.testbed import load_zsl_data; data = load_zsl_data(n_train_per_class=4, n_test_per_class=4)",
    ),
]
# (README text, smaller settings): shorter schedules only, nothing skipped.
SIZE_SUBSTITUTIONS = [
    (
        "coop = CoOpForImageClassification.from_clip(clip, base).fit(train, shots=16, seed=1)",
        'coop = CoOpForImageClassification.from_clip(clip, base).fit(train, shots=4, seed=1, views=2, args={"num_train_epochs": 2})',
    ),
    (
        "generator = SHIPGenerator.from_clip(clip, base).fit(train, shots=16, seed=1)",
        'generator = SHIPGenerator.from_clip(clip, base).fit(train, shots=4, seed=1, views=2, args={"num_train_epochs": 1})',
    ),
    (
        "fit_with_synthesized(model, train, generator, shots=16, seed=1)",
        'fit_with_synthesized(model, train, generator, shots=4, seed=1, views=2, args={"num_train_epochs": 2})',
    ),
    ('model.fit(setting["train"])', 'model.fit(setting["train"], args={"num_train_epochs": 1})'),
    ('args={"budget": 8000}', 'args={"budget": 81}'),
    ('transform=train_tf, args={"num_train_epochs": 5})', 'transform=train_tf, args={"num_train_epochs": 1})'),
    (
        'model.fit(source, stage="source", transform=train_tf)',
        'model.fit(source, stage="source", transform=train_tf, args={"num_train_epochs": 1})',
    ),
    (
        'preset="awa2")',
        'preset="fast", epochs=1, steps_per_epoch=3, decoder_pretrain_epochs=1, cls_epochs=1, syn_num=20)',
    ),
    ('TrainingArguments("out", ', 'TrainingArguments("out", max_steps=2, report_to="none", '),
]


def tiny_bert(path: str) -> str:
    """A 1-layer BERT sequence classifier and its word-level tokenizer, saved to `path`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    Path(path).mkdir(parents=True, exist_ok=True)
    words = "great coffee will buy again stale love it arrived broken and bland".split()
    (Path(path) / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    config = BertConfig(
        vocab_size=5 + len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    BertTokenizerFast(vocab_file=str(Path(path) / "vocab.txt")).save_pretrained(path)
    return path


def python_blocks(text: str) -> list[tuple[str, str]]:
    """(title of the section above it, code) of every ```python block, in order."""
    blocks, title, fence, code = [], "", None, []
    for line in text.splitlines(keepends=True):
        if fence is None and line.startswith("```"):
            fence, code = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            if fence == "python":
                blocks.append((title, "".join(code)))
            fence = None
        elif fence is not None:
            code.append(line)
        elif re.match(r"#{1,4} ", line):
            title = line.lstrip("#").strip()
    return blocks


def substituted(blocks, pairs) -> list[tuple[str, str]]:
    out = [list(b) for b in blocks]
    for old, new in pairs:
        hits = [b for b in out if old in b[1]]
        if not hits:
            raise ValueError(f"README substitution {old!r} matches no Python block: update tests/readme_blocks.py")
        for b in hits:
            b[1] = b[1].replace(old, new)
    return [tuple(b) for b in out]


def tiny_swin(path: str) -> str:
    """A randomly initialised 16-px Swin (the SFDA tests' size) and its image processor, saved to `path`."""
    import torch
    from transformers import SwinConfig, SwinModel, ViTImageProcessorPil

    config = SwinConfig(image_size=16, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2)
    torch.manual_seed(0)
    SwinModel(config).save_pretrained(path)
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(path)
    return path


def sfda_testbed(per_class: int = 4):
    """(source, target, target_test) for the README's SFDA block: the testbed `few_shot` suite's
    first 10 classes (source: its training images; target: its test images, unlabelled for stage 2)."""
    from hf_clipadapt.testbed import load_suite

    ds = load_suite("few_shot", seed=0)
    keep = lambda split: ds[split].filter(lambda y: y < 10, input_columns="label")  # noqa: E731
    source = keep("train").shuffle(seed=0).select(range(10 * per_class))
    target_test = keep("test").shuffle(seed=0).select(range(10 * per_class))
    return source, target_test.remove_columns("label"), target_test


def run(blocks, select=None) -> dict:
    """Execute `blocks` in one namespace; per block, the recorded results of `model`."""
    namespace, report = (
        {"__name__": "__readme__", "tiny_bert": tiny_bert, "tiny_swin": tiny_swin, "sfda_testbed": sfda_testbed},
        {},
    )
    for title, code in blocks:
        if select and not any(s.lower() in title.lower() for s in select):
            continue
        exec(compile(code, f"README.md: {title}", "exec"), namespace)  # noqa: S102 - the README's own code
        config = getattr(namespace.get("model"), "config", None)
        report[title] = {
            "model": type(namespace.get("model")).__name__,
            "eval_results": getattr(config, "eval_results", None),
        }
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--blocks", help="comma-separated parts of section titles to run (default: all)")
    p.add_argument("--full_size", action="store_true", help="keep the README's sizes (only the testbed substitutions)")
    args = p.parse_args(argv)
    pairs = SUBSTITUTIONS + ([] if args.full_size else SIZE_SUBSTITUTIONS)
    blocks = substituted(python_blocks(README.read_text()), pairs)
    os.makedirs(args.workdir, exist_ok=True)
    os.chdir(args.workdir)
    report = run(blocks, args.blocks.split(",") if args.blocks else None)
    print("READMEBLOCKS " + json.dumps(report, default=str))


if __name__ == "__main__":
    sys.exit(main())
