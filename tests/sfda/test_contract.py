"""SFDA runs the shared model battery (`AdaptedModelTesterMixin`)."""

import torch

from hf_clipadapt.sfda import SFDAConfig, SFDAForImageClassification
from hf_clipadapt.testing_utils import PIL_image, AdaptedModelTesterMixin, tiny_image_processor


class TestSFDAContract(AdaptedModelTesterMixin):
    model_class = SFDAForImageClassification
    is_clip_adapted = False  # the backbone is trained, so it is saved with the head

    def make_model(self, tmp_path):
        from transformers import SwinConfig

        torch.manual_seed(0)
        swin = SwinConfig(image_size=16, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2)
        config = SFDAConfig(backbone=None, backbone_config=swin, id2label={0: "a", 1: "b", 2: "c"}, bottleneck_dim=8)
        model = SFDAForImageClassification(config).eval()
        model.image_processor = tiny_image_processor(size=16)
        return model

    def make_inputs(self, model):
        images = [PIL_image(seed=s) for s in range(3)]
        return {"pixel_values": model.image_processor(images=images, return_tensors="pt")["pixel_values"]}
