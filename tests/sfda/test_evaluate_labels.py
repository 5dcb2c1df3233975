"""SFDA evaluation on labels that are not the model's classes says so (issue 11, bad input)."""

import pytest

from hf_clipadapt.sfda import evaluate


def test_universal_evaluation_warns_when_no_label_is_a_model_class(make_model, tiny_dataset, to_pixels):
    from datasets import Value

    model = make_model(num_labels=2)
    ints = tiny_dataset.cast_column("label", Value("int64"))
    outside = ints.map(lambda y: {"label": y + 5}, input_columns="label")  # ids the model does not have
    with pytest.warns(UserWarning, match="every label is unknown.*label2id"):
        scores = evaluate(model, outside, transform=to_pixels)
    assert scores["h_score"] == 0.0
