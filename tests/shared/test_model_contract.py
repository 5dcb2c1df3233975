"""The shared signatures of every model (CONTRIBUTING.md, "The model contract"), read from the code:
fit(train, validation=None, *, seed=DEFAULT_SEED, args=None, resume_from_checkpoint=None, ...) and
evaluate(dataset, *, record_as=None, split="test", ...) on all ten models."""

import inspect

import pytest

import hf_clipadapt
from hf_clipadapt.configuration_utils import DEFAULT_SEED
from hf_clipadapt.evaluation import EvaluationMixin

MODELS = (
    "GDAForImageClassification",
    "CoOpForImageClassification",
    "CLIPAdapterForImageClassification",
    "TipAdapterForImageClassification",
    "SHIPGenerator",
    "UEOForImageClassification",
    "CraFTForImageClassification",
    "TZSLModel",
    "SFDAForImageClassification",
)


@pytest.mark.parametrize("name", MODELS)
def test_fit_has_the_shared_signature(name):
    params = inspect.signature(getattr(hf_clipadapt, name).fit).parameters
    positional = [p for p in params.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == ["self", "train", "validation"], name
    assert params["validation"].default is None
    keyword_only = {p.name: p.default for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keyword_only.get("seed") == DEFAULT_SEED, name
    assert "args" in keyword_only and keyword_only["args"] is None, name
    assert "resume_from_checkpoint" in keyword_only and keyword_only["resume_from_checkpoint"] is None, name


@pytest.mark.parametrize("name", MODELS)
def test_evaluate_is_the_base_one(name):
    model_class = getattr(hf_clipadapt, name)
    assert issubclass(model_class, EvaluationMixin)
    assert model_class.evaluate is EvaluationMixin.evaluate, f"{name} overrides evaluate: implement compute_metrics"
    params = inspect.signature(model_class.evaluate).parameters
    assert params["record_as"].default is None and params["split"].default == "test"
    assert params["record_as"].kind is inspect.Parameter.KEYWORD_ONLY


def test_the_contract_covers_every_registered_model():
    from hf_clipadapt.auto import MODELS as REGISTERED

    names = {path.rsplit(":", 1)[1] for _, path, _ in REGISTERED.values()}
    assert names <= set(MODELS), sorted(names - set(MODELS))
