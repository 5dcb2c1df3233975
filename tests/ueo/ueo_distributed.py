"""One UEO optimizer step on 8 tiny images, in one process or as 2 processes × 4 images.

Self-contained (absolute imports only): `run_distributed` runs this file in a fresh interpreter.
"""


def one_step(out_file: str, num_processes: int) -> None:
    import torch

    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.testing_utils import (
        tiny_clip_model,
        tiny_clip_tokenizer,
        tiny_image_dataset,
        tiny_image_processor,
    )
    from hf_clipadapt.ueo import UEOForImageClassification

    torch.set_num_threads(1)
    clip = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    model = UEOForImageClassification.from_clip(clip, ["red", "green", "blue", "white"])
    data = tiny_image_dataset(4, 2, seed=3).remove_columns("label")  # 8 images: one global batch
    args = dict(
        per_device_train_batch_size=8 // num_processes,
        num_train_epochs=1,
        learning_rate=0.5,
        lr_scheduler_type="constant",
        logging_steps=1,
        augment=False,
    )
    model.fit(data, args=args)
    if torch.distributed.is_initialized():
        assert torch.distributed.get_world_size() == num_processes
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        torch.save({"params": trained, "history": model.history_}, out_file)


def two_processes(out_file: str) -> None:
    one_step(out_file, 2)
