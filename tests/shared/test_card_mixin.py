"""ModelCardMixin: the card is written on save and uploaded after the weights on push."""

from unittest import mock

import torch
import yaml
from transformers import PreTrainedConfig, PreTrainedModel

from hf_clipadapt.hub import ModelCardMixin, build_model_card


class ToyConfig(PreTrainedConfig):
    model_type = "hf_clipadapt_toy"

    def __init__(self, width=4, **kwargs):
        self.width = width
        super().__init__(**kwargs)


class ToyModel(ModelCardMixin, PreTrainedModel):
    config_class = ToyConfig
    base_model_prefix = "toy"

    def __init__(self, config):
        super().__init__(config)
        self.linear = torch.nn.Linear(config.width, 2)
        self.post_init()

    def create_model_card(self, **kwargs):
        return build_model_card(template="default.md", model_name="toy", base_model="toy/base", datasets=["toyset"])


def test_save_pretrained_writes_card(tmp_path):
    ToyModel(ToyConfig()).save_pretrained(tmp_path)
    header = yaml.safe_load((tmp_path / "README.md").read_text().split("---")[1])
    assert header["library_name"] == "hf_clipadapt" and header["base_model"] == "toy/base"
    assert (tmp_path / "model.safetensors").exists()


def test_push_uploads_weights_then_card():
    commits = []

    def fake_commit(self, repo_id, operations, **kwargs):
        commits.append([op.path_in_repo for op in operations])
        return mock.MagicMock(commit_url="https://hub/commit", oid="0" * 40, pr_url=None)

    with (
        mock.patch("huggingface_hub.HfApi.create_repo", return_value=mock.MagicMock(repo_id="me/toy")),
        mock.patch("huggingface_hub.HfApi.create_commit", new=fake_commit),
        mock.patch("huggingface_hub.HfApi.preupload_lfs_files", return_value=None),
    ):
        ToyModel(ToyConfig()).push_to_hub("me/toy")
    assert any("model.safetensors" in files for files in commits[:-1])
    assert commits[-1] == ["README.md"], "our card must be the last upload, so nothing overwrites it"
