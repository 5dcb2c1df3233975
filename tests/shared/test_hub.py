import yaml

from hf_clipadapt.hub import build_model_card, results_table


def test_card_has_yaml_header_and_results():
    card = build_model_card(
        template="default.md",
        model_name="gda-test",
        base_model="openai/clip-vit-base-patch16",
        datasets=["mnist"],
        eval_results=[
            {"dataset_name": "mnist", "dataset_split": "test", "metric_type": "accuracy", "metric_value": 86.5}
        ],
        tags=["gda"],
    )
    text = str(card)
    header = yaml.safe_load(text.split("---")[1])
    assert header["library_name"] == "hf_clipadapt"
    assert header["base_model"] == "openai/clip-vit-base-patch16"
    assert header["pipeline_tag"] == "image-classification"
    assert header["datasets"] == ["mnist"]
    assert "gda" in header["tags"]
    result = header["model-index"][0]["results"][0]
    assert result["metrics"][0]["value"] == 86.5
    assert "| mnist | test | accuracy | 86.50 |" in text


def test_results_table_without_results_says_so():
    assert "No evaluation" in results_table([])


def test_a_local_base_model_stays_out_of_the_hub_metadata(tmp_path):
    for local in (str(tmp_path), "./my-clip"):
        card = build_model_card(template="default.md", model_name="m", base_model=local)
        header = yaml.safe_load(str(card).split("---")[1])
        assert "base_model" not in header  # the Hub reads it as a repo id
        assert local in str(card)  # the text still says what it was built on
    header = yaml.safe_load(
        str(build_model_card(template="default.md", model_name="m", base_model="gpt2")).split("---")[1]
    )
    assert header["base_model"] == "gpt2"
