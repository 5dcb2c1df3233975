"""GDA runs the shared model battery (`AdaptedModelTesterMixin`)."""

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.data import class_names
from hf_clipadapt.gda import GDAForImageClassification
from hf_clipadapt.testing_utils import AdaptedModelTesterMixin, assert_initialised, save_tiny_clip, tiny_image_dataset


class TestGDAContract(AdaptedModelTesterMixin):
    model_class = GDAForImageClassification
    # 16 classes at width 512 stay under 100 kB; the tiny head is far smaller.
    max_saved_bytes = 4_000
    fit_kwargs = {"shots": 2, "views": 1}
    fit_keeps_history = False  # closed form: the chosen alpha and its scores are in the config
    for_classes_refusal = "new_classes_head"

    def check_initialisation(self, model):
        # an unfitted head predicts nothing in particular: its statistics start at zero
        assert_initialised(model.weight, "weight", mean=0.0, std=0)
        assert_initialised(model.bias, "bias", mean=0.0, std=0)

    def make_model(self, tmp_path):
        backbone = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
        data = tiny_image_dataset(num_classes=3, per_class=6, class_names=["red", "green", "blue"])
        model = GDAForImageClassification.from_clip(backbone, class_names(data))
        return model.fit(data, shots=2, views=2, seed=1, dataset_name="tiny-colours")

    def make_inputs(self, model):
        from hf_clipadapt.testing_utils import PIL_image

        return {"pixel_values": model.backbone.preprocess([PIL_image(seed=s) for s in range(4)])}


def test_head_for_16_classes_at_width_512_is_under_100kB(tmp_path):
    """The size the issue asks for, at a real CLIP width (no CLIP needed: load_backbone=False path)."""
    from hf_clipadapt.gda import GDAConfig

    config = GDAConfig(embed_dim=512, num_labels=16, is_fitted=True)
    GDAForImageClassification(config).save_pretrained(tmp_path / "head")
    size = (tmp_path / "head" / "model.safetensors").stat().st_size
    assert size < 100_000, size
