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

from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .io import write_directory_atomic

LIBRARY_NAME = "hf_clipadapt"


def template_path(name: str) -> str:
    """Path of a card template shipped in `model_cards/` (installed as hf_clipadapt.model_cards)."""
    path = resources.files("hf_clipadapt.model_cards") / name
    if not path.is_file():
        available = sorted(p.name for p in resources.files("hf_clipadapt.model_cards").iterdir() if p.name.endswith(".md"))
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
        lines.append(f"| {r['dataset_name']} | {r.get('dataset_split') or '-'} | {r.get('metric_name') or r['metric_type']} | {value} |")
    return "\n".join(lines)


def _looks_like_repo_id(name: str) -> bool:
    """"owner/name" or "name" as the Hub spells repo ids, and not a folder on this machine."""
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
    return ModelCard.from_template(
        card_data,
        template_path=template_path(template),
        model_name=model_name,
        base_model=base_model,
        datasets=datasets or [],
        results_table=results_table(eval_results),
        **template_vars,
    )


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
        out = []

        def write(tmp_dir):
            out.append(super(ModelCardMixin, self).save_pretrained(tmp_dir, *args, **kwargs))
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
