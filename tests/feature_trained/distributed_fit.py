"""Run by tests/feature_trained/test_distributed.py in 2 processes (and 1) from a fresh interpreter."""

import torch
import torch.nn.functional as F


def fit_coop_and_save(out_path: str) -> None:
    from accelerate import PartialState

    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.coop import CoOpForImageClassification
    from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

    torch.set_num_threads(1)
    state = PartialState(cpu=True)
    clip = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    model = CoOpForImageClassification.from_clip(clip, ["red", "green", "blue"])
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(8)
    features = F.normalize(torch.randn(24, clip.embed_dim, generator=g), dim=-1)
    # the same global batch of 8: 8 per device alone, 4 per device on each of 2 processes
    per_device = 8 // state.num_processes
    initial = model.prompt_learner.ctx.detach().clone()
    model.fit_features(
        features,
        labels,
        args={
            "num_train_epochs": 3,
            "per_device_train_batch_size": per_device,
            "learning_rate": 0.05,
            "use_cpu": True,
        },
    )
    if state.is_main_process:
        torch.save((initial, model.prompt_learner.ctx.detach()), out_path)
