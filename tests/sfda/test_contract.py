"""SFDA runs the shared model battery (`AdaptedModelTesterMixin`)."""

import torch

from hf_clipadapt.sfda import SFDAConfig, SFDAForImageClassification
from hf_clipadapt.testing_utils import (
    AdaptedModelTesterMixin,
    PIL_image,
    assert_initialised,
    tiny_image_dataset,
    tiny_image_processor,
)


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

    def make_unfitted_model(self, tmp_path):
        model = self.make_model(tmp_path)
        model.config.is_fitted = False  # as from_backbone builds it
        return model

    def transform(self, model):
        return lambda images, indices, view: model.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def tiny_labelled_data(self):
        return tiny_image_dataset(num_classes=3, per_class=4, class_names=["a", "b", "c"])

    def fit_model(self, model, seed):
        return model.fit(
            self.tiny_labelled_data(),
            seed=seed,
            stage="source",
            transform=self.transform(model),
            args={"max_steps": 1, "batch_size": 4},
        )

    def evaluation_data(self, model):
        return self.tiny_labelled_data(), {"transform": self.transform(model)}

    def check_initialisation(self, model):
        # SHOT's init_weights (the default head_init="official"): Xavier-normal Linear weights,
        # zero biases, BatchNorm weight ~ N(1, 0.02²) and bias 0
        head = model.head
        for name, linear in (("bottleneck", head.bottleneck), ("classifier", head.classifier)):
            fan_in, fan_out = linear.in_features, linear.out_features
            assert_initialised(linear.weight, name, mean=0.0, std=(2.0 / (fan_in + fan_out)) ** 0.5)
            assert_initialised(linear.bias, f"{name}.bias", mean=0.0, std=0)
        assert_initialised(head.norm.bias, "norm.bias", mean=0.0, std=0)
        assert abs(head.norm.weight.mean().item() - 1.0) < 0.05 and head.norm.weight.std().item() < 0.05

    def make_inputs(self, model):
        images = [PIL_image(seed=s) for s in range(3)]
        return {"pixel_values": model.image_processor(images=images, return_tensors="pt")["pixel_values"]}
