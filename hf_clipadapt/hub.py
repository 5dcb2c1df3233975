"""Model cards and Hub uploads, shared by every method.

`build_model_card` renders a template from `model_cards/` with
`huggingface_hub.ModelCard`: the YAML header (library, base model, pipeline tag,
datasets, eval results) plus a body saying what was trained on what and the
measured numbers.

`ModelCardMixin` goes before `PreTrainedModel` in a model's bases. transformers'
`push_to_hub` writes its own generic README, so the mixin uploads the weights
first and our card second; `save_pretrained` writes the card locally too.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .io import write_directory_atomic

LIBRARY_NAME = "hf_clipadapt"


def template_path(name: str) -> str:
    """Path of a card template shipped in `model_cards/` (installed as hf_clipadapt.model_cards)."""
    path = resources.files("hf_clipadapt.model_cards") / name
    if not path.is_file():
        available = sorted(
            p.name for p in resources.files("hf_clipadapt.model_cards").iterdir() if p.name.endswith(".md")
        )
        raise FileNotFoundError(f"no model card template {name!r}; available: {available}")
    return str(path)


def _eval_result(model_name: str, r: dict) -> EvalResult:
    required = ("dataset_name", "metric_type", "metric_value")
    missing = [k for k in required if k not in r]
    if missing:
        raise ValueError(f"eval result {r} lacks {missing}")
    return EvalResult(
        task_type=r.get("task_type", "image-classification"),
        dataset_type=r.get("dataset_type", r["dataset_name"]),
        dataset_name=r["dataset_name"],
        dataset_split=r.get("dataset_split"),
        metric_type=r["metric_type"],
        metric_name=r.get("metric_name"),
        metric_value=r["metric_value"],
    )


def results_table(eval_results: list[dict]) -> str:
    """A markdown table of eval results for the card body."""
    if not eval_results:
        return "_No evaluation was recorded for this checkpoint._"
    lines = ["| dataset | split | metric | value |", "|---|---|---|---|"]
    for r in eval_results:
        value = r["metric_value"]
        value = f"{value:.2f}" if isinstance(value, float) else value
        lines.append(
            f"| {r['dataset_name']} | {r.get('dataset_split') or '-'} | {r.get('metric_name') or r['metric_type']} | {value} |"
        )
    return "\n".join(lines)


def _looks_like_repo_id(name: str) -> bool:
    """ "owner/name" or "name" as the Hub spells repo ids, and not a folder on this machine."""
    import os
    import re

    from .checkpoints import resolve_alias

    if resolve_alias(name) != name:  # a registered local checkpoint ("testbed"), not a Hub repo
        return False
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)) and not os.path.isdir(name) and not name.startswith(".")


def build_model_card(
    *,
    template: str,
    model_name: str,
    base_model: str | None,
    pipeline_tag: str | None = "image-classification",
    datasets: list[str] | None = None,
    eval_results: list[dict] | None = None,
    tags: list[str] | None = None,
    license: str | None = None,
    **template_vars,
) -> ModelCard:
    """Render `model_cards/<template>` into a ModelCard with a complete YAML header.

    A `base_model` that is a local folder (the testbed CLIP, your own checkpoint)
    stays in the card's text but not in its metadata: the Hub reads that field as a
    repo id, and a path would also publish your file system layout."""
    eval_results = list(eval_results or [])
    hub_base_model = base_model if base_model and _looks_like_repo_id(base_model) else None
    card_data = ModelCardData(
        model_name=model_name,
        library_name=LIBRARY_NAME,
        pipeline_tag=pipeline_tag,
        base_model=hub_base_model,
        datasets=datasets or None,
        tags=sorted({LIBRARY_NAME, *(tags or [])}),
        license=license,
        eval_results=[_eval_result(model_name, r) for r in eval_results] or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=template_path(template),
        model_name=model_name,
        base_model=base_model,
        datasets=datasets or [],
        results_table=results_table(eval_results),
        **template_vars,
    )
    card.text = card.text.rstrip() + "\n\n" + INSTALL_SECTION
    return card


# Every card says how to install and load: the checkpoint needs the package.
INSTALL_SECTION = """## Installing and loading

This checkpoint was saved by hf_clipadapt; loading it needs the package:

```bash
pip install hf_clipadapt
```

```python
import hf_clipadapt  # registers its model types with the transformers Auto classes
from transformers import AutoModel, pipeline

model = AutoModel.from_pretrained("<this repo or folder>")
```

Without `import hf_clipadapt`, pass `trust_remote_code=True`: the checkpoint's
`hf_clipadapt_auto.py` holds no model code, it only imports the installed package
(and transformers says `pip install hf_clipadapt` when it is missing).
"""


class ModelCardMixin:
    """Adds a method-specific model card to a `PreTrainedModel`.

    Subclasses implement `create_model_card(**kwargs) -> ModelCard`, usually by
    calling `build_model_card` with what the config records (base model, training
    data, measured results).
    """

    def create_model_card(self, **kwargs) -> ModelCard:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define a model card")

    def _save_extra_files(self, directory: Path) -> None:
        """Files that belong in the checkpoint besides config, weights and card (e.g. the
        image processor and tokenizer a `pipeline` needs); written inside the atomic save."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save_pretrained plus our card, written to a sibling folder
        that then replaces the old one as a whole (`io.write_directory_atomic`)."""
        if not kwargs.get("is_main_process", True):
            return super().save_pretrained(save_directory, *args, **kwargs)
        from .auto import auto_map, write_auto_shim

        out, model_type = [], getattr(self.config, "model_type", None)
        shim = auto_map(model_type) if model_type else None
        if shim:  # AutoModel.from_pretrained(..., trust_remote_code=True) without `import hf_clipadapt`
            self.config.auto_map = shim

        def write(tmp_dir):
            out.append(super(ModelCardMixin, self).save_pretrained(tmp_dir, *args, **kwargs))
            if shim:
                write_auto_shim(tmp_dir, model_type)
            self._save_extra_files(Path(tmp_dir))
            self.create_model_card().save(Path(tmp_dir) / "README.md")

        write_directory_atomic(save_directory, write)
        return out[0]

    def push_to_hub(self, repo_id: str, *args, model_card: ModelCard | None = None, **kwargs):
        """Upload the weights and config, then our card (after, so it is not overwritten)."""
        url = super().push_to_hub(repo_id, *args, **kwargs)
        card = model_card if model_card is not None else self.create_model_card()
        token = kwargs.get("token")
        HfApi(token=token if isinstance(token, str) else None).upload_file(
            path_or_fileobj=str(card).encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            revision=kwargs.get("revision"),
            commit_message="Add hf_clipadapt model card",
        )
        return url


# ---------------------------------------------------------------------------- PEFT LoRA adapters
LORA_OPTIMIZER_TEXT = {
    "adamw": "plain LoRA with Trainer's AdamW",
    "lorapro-full": "LoRA-Pro, full mode (Adam on the m×n equivalent gradient; Wang et al., ICLR 2025)",
    "lorapro-efficient": "LoRA-Pro, efficient mode (closed-form gradient adjustment, then AdamW on A and B)",
}
_LORA_SETTINGS = (
    "lora_r",
    "lora_alpha",
    "target_modules",
    "lr",
    "weight_decay",
    "warmup_ratio",
    "batch_size",
    "max_steps",
    "num_train_epochs",
    "seed",
)


def _point_adapter_at(out: Path, base_model: str) -> None:
    """Rewrite adapter_config.json's `base_model_name_or_path` to the Hub id `base_model`
    (PEFT records the local folder it loaded from); kept apart from the card's text."""
    adapter_config = out / "adapter_config.json"
    if adapter_config.is_file():
        cfg = json.loads(adapter_config.read_text())
        if cfg.get("base_model_name_or_path") != base_model:
            cfg["base_model_name_or_path"] = base_model
            adapter_config.write_text(json.dumps(cfg, indent=2, sort_keys=True))


def _lora_card_data(out: Path, base_model: str, task: str, dataset: str, results: list) -> ModelCardData:
    """The card's YAML metadata (library, base model, tags, Hub eval results) for
    `write_lora_adapter_card`; kept apart so that function reads as the card's text."""
    return ModelCardData(
        library_name="peft",
        base_model=base_model,
        pipeline_tag=task,
        tags=["lora", "lora-pro", "hf_clipadapt"],
        datasets=[dataset],
        model_name=out.resolve().name,
        eval_results=[
            EvalResult(
                task_type=task,
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=split,
                metric_type=metric,
                metric_value=float(value),
            )
            for split, metric, value in results
        ]
        or None,
    )


def write_lora_adapter_card(
    output_dir: str | Path,
    *,
    base_model: str,
    task: str,
    dataset: str,
    optimizer: str = "lorapro-full",
    settings: dict | None = None,
    data_counts: dict | None = None,
    results=(),
    notes=(),
) -> Path:
    """Write a real model card over PEFT's blank one ("[More Information Needed]") for a
    PEFT LoRA adapter saved in `output_dir`: what was trained from which base model, with
    which optimizer and settings, on what data, and `results` ((split, metric, value)).
    `base_model` should be the Hub id: it also replaces a local path that PEFT recorded as
    `base_model_name_or_path` in adapter_config.json, so the adapter names the public model
    it was trained from, not the folder it was loaded from. Returns the card's path.

    Args:
        output_dir: the folder PEFT saved the adapter in; README.md is written there.
        base_model: Hub id of the base model.
        task: the pipeline tag (e.g. "text-classification", "text-generation").
        dataset: the dataset's name or Hub id.
        optimizer: a key of `LORA_OPTIMIZER_TEXT` (or free text) naming the optimizer.
        settings: training settings; those named in `_LORA_SETTINGS` are listed.
        data_counts: examples used per split, e.g. {"train": 1000}.
        results: (split, metric, value) triples.
        notes: extra lines for the Data section.
    """
    out = Path(output_dir)
    _point_adapter_at(out, base_model)
    settings, results = dict(settings or {}), list(results)
    card_data = _lora_card_data(out, base_model, task, dataset, results)
    opt = LORA_OPTIMIZER_TEXT.get(optimizer, optimizer)
    trained = (
        ", ".join(f"{k} {settings[k]}" for k in _LORA_SETTINGS if settings.get(k) is not None)
        or "see the training script"
    )
    counts = ", ".join(f"{k}: {v}" for k, v in (data_counts or {}).items()) or "not recorded"
    rows = "\n".join(f"| {s} | {m} | {v:.4g} |" for s, m, v in results) or "| - | - | not measured |"
    body = (
        f"---\n{card_data.to_yaml()}\n---\n\n# LoRA adapter for `{base_model}`, trained with {opt}\n\n"
        "A plain PEFT LoRA adapter (`peft_type: LORA`): it loads with stock\n"
        f'`PeftModel.from_pretrained(AutoModel...from_pretrained("{base_model}"), this_folder)`; '
        "hf_clipadapt (`pip install hf_clipadapt`) is only needed to train it again.\n\n"
        f"## What was trained\n- Base model: `{base_model}`; task: {task}\n- Optimizer: {opt}\n- Settings: {trained}\n\n"
        f"## Data\n- Dataset: `{dataset}`\n- Examples used: {counts}\n"
        + "".join(f"- {n}\n" for n in notes)
        + f"\n## Results\n\n| split | metric | value |\n|---|---|---|\n{rows}\n"
    )
    path = out / "README.md"
    ModelCard(body).save(path)
    return path


def card_datasets(config) -> list[str] | None:
    """The datasets a card names: the training data `fit` recorded, else the datasets
    its results were recorded on (`evaluate(record_as=...)`), else None."""
    if config.dataset_name:
        return [config.dataset_name]
    evaluated = [r.get("dataset_name") for r in (config.eval_results or []) if r.get("dataset_name")]
    return list(dict.fromkeys(evaluated)) or None
