"""The testbed CLIP's architecture and image processor (nothing custom: stock
`CLIPConfig` / `CLIPModel` / `CLIPImageProcessorPil`, so every method loads the
checkpoint exactly as it would openai/clip-vit-base-patch16)."""

from __future__ import annotations

CANVAS_SIZE = 48
PATCH_SIZE = 8


def testbed_clip_config(
    vocab_size: int,
    *,
    width: int = 128,
    vision_width: int = 128,
    text_layers: int = 3,
    vision_layers: int = 4,
    projection_dim: int = 128,
    max_length: int = 24,
    patch_size: int = PATCH_SIZE,
):
    """A small CLIPConfig for 48×48 canvases (8-pixel patches: 36 patch tokens)."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=width,
            intermediate_size=4 * width,
            num_attention_heads=4,
            num_hidden_layers=text_layers,
            max_position_embeddings=max_length,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=vision_width,
            intermediate_size=4 * vision_width,
            num_attention_heads=4,
            num_hidden_layers=vision_layers,
            image_size=CANVAS_SIZE,
            patch_size=patch_size,
        ),
        projection_dim=projection_dim,
    )


def build_processor(size: int = CANVAS_SIZE):
    """`CLIPImageProcessorPil` for the canvas: resize + centre crop to `size` (a no-op on
    world images), rescale, normalise with OpenAI CLIP's mean and std."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def pixel_values_from_uint8(images, mean, std):
    """uint8 [B, H, W, 3] canvas images -> normalised float [B, 3, H, W].

    The fast path used in pretraining; on canvas-sized images it equals the saved
    `CLIPImageProcessorPil` (tests/testbed checks it), so features computed through
    the processor see exactly the pretraining input distribution.
    """
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
