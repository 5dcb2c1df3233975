"""Soft prompts for CLIP's text tower: the layer under CoOp, SHIP, UEO and CraFT.

A soft prompt replaces the word embeddings of "a photo of a" in "a photo of a
{class}." with free vectors `context` ([n_ctx, W], W the text width). transformers'
`CLIPTextModel` has no `inputs_embeds` entry point, so `SoftPromptTextEncoder`
replays its forward pass on spliced embeddings: token embeddings with the context
put right after BOS, position embeddings, the encoder under CLIP's causal mask,
the final LayerNorm at the EOS token, and the text projection. With the context set
to the real embeddings of "a photo of a" it reproduces `get_text_features` exactly
(tests/clip/test_soft_prompt.py checks this).

Context shapes, all broadcast against the K class prompts:
    [n_ctx, W]        one context shared by all classes (CoOp),
    [K, n_ctx, W]     class-specific contexts (CoOp-CSC, CraFT's A·z per class),
    [B, K, n_ctx, W]  per-sample contexts (SHIP's feature-conditioned bias),
                      giving [B, K, D] features; B or K may be 1 to broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import CLIPBackbone, check_classnames, prompt_name

# Where CoOp puts the class name among the context tokens (KaiyangZhou/CoOp
# trainers/coop.py L126-180, CLASS_TOKEN_POSITION): after it ("end", the default of
# every released config), between its two halves ("middle"), or before it ("front").
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


@dataclass(frozen=True)
class PromptTokens:
    """Token ids of "X X ... X {classname}{suffix}" for K classes, ready for `SoftPromptTextEncoder`.

    `input_ids` [K, L] hold placeholder ids where the context goes and are padded to the
    longest prompt; `eos_positions` [K] is where each prompt is pooled. With the class
    name at the end the context is contiguous, at ctx_start..ctx_start+n_ctx-1, and
    `ctx_positions` is None; otherwise `ctx_positions` [K, n_ctx] holds, per class, the
    position of each context vector (it depends on the length of the class name).
    """

    input_ids: torch.Tensor
    eos_positions: torch.Tensor
    n_ctx: int
    ctx_start: int
    classnames: tuple[str, ...]
    ctx_positions: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class SoftPromptTextEncoder(nn.Module):
    """CLIP's text tower with an `inputs_embeds` path for learnable context vectors.

    Args:
        model: a `CLIPBackbone`, or a CLIP model (`CLIPModel`, `CLIPTextModelWithProjection`)
            with `.text_model` and `.text_projection`. The modules are shared, not copied.
        tokenizer: the model's tokenizer (taken from the backbone when omitted).
    """

    def __init__(self, model, tokenizer=None):
        super().__init__()
        if isinstance(model, CLIPBackbone):
            tokenizer = tokenizer if tokenizer is not None else model.tokenizer
            model = model.model
        missing = [a for a in ("text_model", "text_projection") if not hasattr(model, a)]
        text_model = getattr(model, "text_model", None)
        missing += [a for a in ("embeddings", "encoder", "final_layer_norm") if not hasattr(text_model, a)]
        if missing:
            raise TypeError(
                f"SoftPromptTextEncoder needs a CLIP-style text tower (text_model.embeddings/encoder/"
                f"final_layer_norm and text_projection); {type(model).__name__} lacks {missing}. "
                "Use a CLIPModel or CLIPTextModelWithProjection."
            )
        if tokenizer is None:
            raise ValueError(
                "SoftPromptTextEncoder needs the model's tokenizer: pass tokenizer= or a CLIPBackbone with one."
            )
        self.text_model = text_model
        self.text_projection = model.text_projection
        self.tokenizer = tokenizer
        self._token_cache: dict = {}

    def train(self, mode: bool = True):
        # The text tower is frozen CLIP: keep its eval behaviour whatever the wrapper does.
        super().train(mode)
        self.text_model.eval()
        return self

    @property
    def width(self) -> int:
        """W, the width of token embeddings (and of context vectors)."""
        return self.text_model.embeddings.token_embedding.embedding_dim

    @property
    def max_length(self) -> int:
        return self.text_model.embeddings.position_embedding.num_embeddings

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.text_model.embeddings.token_embedding

    # ------------------------------------------------------------------ tokens
    def _eos_token_id(self) -> int:
        eos = getattr(self.text_model, "eos_token_id", None)
        return self.text_model.config.eos_token_id if eos is None else eos

    def _eos_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Same rule as CLIPTextModel.forward, so pooling matches get_text_features:
        # configs from before transformers PR #24773 carry eos_token_id == 2 and pool
        # at the highest id (EOS is the last vocabulary entry); newer ones pool at the
        # first EOS (padding may reuse the EOS id, hence "first").
        eos = self._eos_token_id()
        if eos == 2:
            return input_ids.to(torch.int).argmax(dim=-1)
        return (input_ids.to(torch.int) == eos).int().argmax(dim=-1)

    def _placeholder_id(self, bos_id) -> int:
        # CoOp writes the context as "X X X X": use the id of "X" when it is a single
        # ordinary token, so decoded prompts read naturally. Any id works as long as it
        # is not EOS (it is never embedded: the context replaces it).
        ids = self.tokenizer("X", add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] != self._eos_token_id():
            return ids[0]
        return bos_id if bos_id is not None else 0

    def tokenize_classnames(
        self, classnames: list[str], n_ctx: int, suffix: str = ".", class_token_position: str = "end"
    ) -> PromptTokens:
        """Token ids of "X"*n_ctx + " {classname}{suffix}" per class (cached per arguments);
        "_" in a name is read as a space (`prompt_name`), as every official codebase does.

        `class_token_position` moves the name's tokens as CoOp does (`trainers/coop.py`
        L136-177): "middle" puts them between the first n_ctx // 2 context tokens and the
        rest, "front" before all of them; the suffix and EOS stay last, so each prompt keeps
        its length and its EOS position."""
        classnames = check_classnames(classnames)
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"class_token_position must be one of {CLASS_TOKEN_POSITIONS} (CoOp's CLASS_TOKEN_POSITION), "
                f"got {class_token_position!r}"
            )
        if not isinstance(n_ctx, int) or n_ctx < 1:
            raise ValueError(f"n_ctx must be a positive int, got {n_ctx!r}")
        if n_ctx > self.max_length - 3:
            raise ValueError(
                f"n_ctx={n_ctx} leaves no room for BOS, a class name and EOS in {self.max_length} positions; "
                f"use n_ctx <= {self.max_length - 3} (CoOp uses 4 or 16)."
            )
        key = (tuple(classnames), n_ctx, suffix, class_token_position)
        if key in self._token_cache:
            return self._token_cache[key]
        bos = self.tokenizer.bos_token_id
        # Tokenise "{classname}{suffix}" alone (CLIP's BPE splits on words, so this equals
        # the tail of "X X X X {classname}{suffix}") leaving n_ctx positions for the context.
        encoded = self.tokenizer([f"{prompt_name(c)}{suffix}" for c in classnames])["input_ids"]
        self._check_name_tokens(classnames, n_ctx, suffix)
        too_long = [(c, len(ids)) for c, ids in zip(classnames, encoded) if len(ids) + n_ctx > self.max_length]
        if too_long:
            raise ValueError(
                f"with n_ctx={n_ctx} context tokens these prompts exceed the text tower's {self.max_length} positions "
                f"(name, tokens incl. BOS/EOS): {too_long[:5]}. Shorten the class names or use fewer context tokens."
            )
        ctx_start = 1 if bos is not None and encoded[0][:1] == [bos] else 0
        placeholder = self._placeholder_id(bos)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos_token_id()
        if class_token_position == "end":
            rows = [ids[:ctx_start] + [placeholder] * n_ctx + ids[ctx_start:] for ids in encoded]
            ctx_positions = None
        else:
            rows, ctx_positions = self._place_class_tokens(
                classnames, encoded, ctx_start, n_ctx, placeholder, class_token_position
            )
        length = max(len(r) for r in rows)
        # Right padding is harmless: under the causal mask the EOS token never sees it.
        input_ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], dtype=torch.long)
        tokens = PromptTokens(
            input_ids, self._eos_positions(input_ids), n_ctx, ctx_start, tuple(classnames), ctx_positions
        )
        self._token_cache[key] = tokens
        return tokens

    def _place_class_tokens(
        self, classnames, encoded, ctx_start: int, n_ctx: int, placeholder: int, position: str
    ) -> tuple[list[list[int]], torch.Tensor]:
        """Rows [BOS][ctx[:h]][name][ctx[h:]][suffix][EOS] with h = n_ctx // 2 ("middle") or
        h = 0 ("front"), and the [K, n_ctx] positions of the context in them. As in CoOp
        (`coop.py` L99, L142-143), the name's tokens are the first len(tokenize(name)) tokens
        after BOS of the tokenised "{name}{suffix}"."""
        first = n_ctx // 2 if position == "middle" else 0
        rows, positions = [], []
        for c, ids in zip(classnames, encoded):
            name_ids = self.tokenizer(prompt_name(c), add_special_tokens=False)["input_ids"]
            name_len = len(name_ids)
            head, name, rest = ids[:ctx_start], ids[ctx_start : ctx_start + name_len], ids[ctx_start + name_len :]
            if name != name_ids:
                raise ValueError(
                    f"the tokens of class name {c!r} change when the suffix follows it ({name_ids} alone, {name} in "
                    f"the prompt), so its tokens cannot be moved (class_token_position={position!r}); use "
                    "class_token_position='end' or another suffix."
                )
            rows.append(head + [placeholder] * first + name + [placeholder] * (n_ctx - first) + rest)
            after = ctx_start + first + name_len  # where the second part of the context starts
            positions.append(list(range(ctx_start, ctx_start + first)) + list(range(after, after + n_ctx - first)))
        return rows, torch.tensor(positions, dtype=torch.long)

    def _check_name_tokens(self, classnames: list[str], n_ctx: int, suffix: str) -> None:
        """Every class name must give at least one real token (not empty, not only
        unknown or special tokens): its prompt would otherwise not name the class."""
        special = {
            self.tokenizer.unk_token_id,
            self._eos_token_id(),
            self.tokenizer.pad_token_id,
            self.tokenizer.bos_token_id,
        }
        empty = [
            c
            for c in classnames
            if not [
                t for t in self.tokenizer(prompt_name(c), add_special_tokens=False)["input_ids"] if t not in special
            ]
        ]
        if empty:
            raise ValueError(
                f"these class names give no tokens the text tower knows: {empty[:5]}. Give each class a name in words "
                "(e.g. from a ClassLabel's names), not an empty or unencodable string."
            )

    # ------------------------------------------------------------------ context init
    @torch.no_grad()
    def init_context_from_text(self, text: str = "a photo of a", n_ctx: int | None = None) -> torch.Tensor:
        """[n_ctx, W] word embeddings of `text` (a copy, fp32): CoOp's "a photo of a" initialisation."""
        ids = self.tokenizer(prompt_name(text), add_special_tokens=False)["input_ids"]  # CoOp coop.py L74
        if not ids:
            raise ValueError(f"init text {text!r} has no tokens")
        if n_ctx is not None and n_ctx != len(ids):
            raise ValueError(
                f"init text {text!r} is {len(ids)} tokens but n_ctx={n_ctx}; pass n_ctx={len(ids)}, "
                "another phrase, or random initialisation (init_context_random)."
            )
        ids = torch.tensor(ids, device=self.token_embedding.weight.device)
        return self.token_embedding(ids).detach().float().clone()

    def init_context_random(self, n_ctx: int, *shape: int, std: float = 0.02, generator=None) -> torch.Tensor:
        """[*shape, n_ctx, W] context drawn from N(0, std²), CoOp's random initialisation (fp32, CPU)."""
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        return torch.randn(*shape, n_ctx, self.width, generator=generator) * std

    # ------------------------------------------------------------------ forward
    def forward(self, context: torch.Tensor, prompts) -> torch.Tensor:
        """L2-normalised text features of the prompts with `context` spliced in.

        Args:
            context: [n_ctx, W], [K, n_ctx, W] or [B, K, n_ctx, W] (K or B may be 1).
            prompts: class names (tokenised with n_ctx = context.shape[-2]) or `PromptTokens`.

        Returns:
            [K, D] for 2-D/3-D context, [B, K, D] for 4-D context.
        """
        if not isinstance(context, torch.Tensor) or context.dim() not in (2, 3, 4):
            raise ValueError(
                "context must be a tensor [n_ctx, W], [K, n_ctx, W] or [B, K, n_ctx, W]; "
                f"got {getattr(context, 'shape', type(context).__name__)}"
            )
        tokens = prompts if isinstance(prompts, PromptTokens) else self.tokenize_classnames(prompts, context.shape[-2])
        n_ctx, width = context.shape[-2:]
        if n_ctx != tokens.n_ctx or width != self.width:
            raise ValueError(
                f"context has n_ctx={n_ctx}, W={width} but the prompts were tokenised for n_ctx={tokens.n_ctx} "
                f"and the text tower has W={self.width}; re-tokenise with tokenize_classnames(classnames, {n_ctx})."
            )
        num_classes = len(tokens)
        if context.dim() >= 3 and context.shape[-3] not in (1, num_classes):
            raise ValueError(
                f"class-specific context has {context.shape[-3]} rows but there are {num_classes} classes; "
                "pass one context per class (or 1 to share)."
            )

        embedding = self.token_embedding
        input_ids = tokens.input_ids.to(embedding.weight.device)
        token_embeds = embedding(input_ids)  # [K, L, W]
        batch_shape = context.shape[:-3] if context.dim() == 4 else ()
        context = context.to(dtype=token_embeds.dtype, device=token_embeds.device)
        context = context.expand(*batch_shape, num_classes, n_ctx, width)
        token_embeds = token_embeds.expand(*batch_shape, *token_embeds.shape)
        if tokens.ctx_positions is None:  # the class name at the end: one contiguous block
            start = tokens.ctx_start
            inputs_embeds = torch.cat(
                [token_embeds[..., :start, :], context, token_embeds[..., start + n_ctx :, :]], dim=-2
            )
        else:  # "middle"/"front": each class's context goes to its own positions
            index = tokens.ctx_positions.to(input_ids.device)[..., None].expand(context.shape)
            inputs_embeds = token_embeds.scatter(-2, index, context)
        inputs_embeds = inputs_embeds.reshape(-1, input_ids.shape[1], width)

        # Rows are (batch, class)-major, so the K EOS positions repeat once per batch item.
        eos_positions = tokens.eos_positions.to(input_ids.device).repeat(inputs_embeds.shape[0] // num_classes)
        pooled = self._encode(inputs_embeds, eos_positions)
        features = F.normalize(self.text_projection(pooled), dim=-1)
        return features.view(*batch_shape, num_classes, -1)

    def _encode(self, inputs_embeds: torch.Tensor, eos_positions: torch.Tensor) -> torch.Tensor:
        """CLIPTextModel.forward from the embedding sum on; returns final-LayerNormed EOS states [N, W]."""
        from transformers.masking_utils import create_causal_mask

        text_model = self.text_model
        position_ids = text_model.embeddings.position_ids[:, : inputs_embeds.shape[1]]
        hidden_states = text_model.embeddings(inputs_embeds=inputs_embeds, position_ids=position_ids)
        # Exactly as CLIPTextModel builds it: no padding mask (padding follows EOS and the
        # mask is causal), and is_causal=True for attention kernels that take the flag.
        attention_mask = create_causal_mask(
            config=text_model.config, inputs_embeds=hidden_states, attention_mask=None, cache=None
        )
        hidden_states = text_model.encoder(
            inputs_embeds=hidden_states, attention_mask=attention_mask, is_causal=True
        ).last_hidden_state
        # LayerNorm acts per token, so pooling first is exact and skips L-1 rows.
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        return text_model.final_layer_norm(hidden_states[rows, eos_positions])


class PromptLearner(nn.Module):
    """CoOp's learnable context for a fixed set of classes: `forward()` -> [K, D] class text features.

    Only `ctx` is trainable; the CLIP text tower is frozen (requires_grad=False) but
    differentiable, so gradients reach `ctx`. `ctx` is an fp32 parameter whatever the
    model dtype (it is cast on the way in), so optimisers see full-precision weights.

    Args:
        model: a `CLIPBackbone` (or a `SoftPromptTextEncoder`).
        classnames: the K class names.
        n_ctx: number of context tokens. Default: the token count of `ctx_init`, or 4 for random init.
        ctx_init: phrase whose word embeddings initialise the context ("a photo of a"), or None
            for N(0, 0.02²) random initialisation (CoOp's 16-token setting: n_ctx=16, ctx_init=None).
        class_specific: one context per class ([K, n_ctx, W], CoOp-CSC) instead of a shared one.
        suffix: text after the class name (CoOp uses ".").
        generator: torch.Generator for the random initialisation.
        class_token_position: where the class name sits among the context tokens: "end"
            (CoOp's default), "middle" or "front" (CoOp's CLASS_TOKEN_POSITION, `trainers/coop.py`
            L126-180; see `SoftPromptTextEncoder.tokenize_classnames`).
    """

    def __init__(
        self,
        model,
        classnames: list[str],
        n_ctx: int | None = None,
        ctx_init: str | None = "a photo of a",
        class_specific: bool = False,
        suffix: str = ".",
        generator: torch.Generator | None = None,
        class_token_position: str = "end",
    ):
        super().__init__()
        self.text_encoder = model if isinstance(model, SoftPromptTextEncoder) else SoftPromptTextEncoder(model)
        self.text_encoder.requires_grad_(False)
        self.classnames = check_classnames(classnames)
        if ctx_init is not None:
            ctx = self.text_encoder.init_context_from_text(ctx_init, n_ctx)
            if class_specific:
                ctx = ctx.expand(len(self.classnames), *ctx.shape).clone()
        else:
            n_ctx = 4 if n_ctx is None else n_ctx
            shape = (len(self.classnames),) if class_specific else ()
            ctx = self.text_encoder.init_context_random(n_ctx, *shape, generator=generator)
        self.ctx = nn.Parameter(ctx.to(self.text_encoder.token_embedding.weight.device))
        self.n_ctx = ctx.shape[-2]
        self.class_specific = class_specific
        self.suffix = suffix
        self.class_token_position = class_token_position
        tokens = self.text_encoder.tokenize_classnames(self.classnames, self.n_ctx, suffix, class_token_position)
        # Buffers, so that .to(device) moves the token ids once instead of at every step.
        self.register_buffer("input_ids", tokens.input_ids.clone(), persistent=False)
        self.register_buffer("eos_positions", tokens.eos_positions.clone(), persistent=False)
        positions = tokens.ctx_positions
        self.register_buffer("ctx_positions", None if positions is None else positions.clone(), persistent=False)
        self._ctx_start = tokens.ctx_start

    @property
    def tokens(self) -> PromptTokens:
        """The prepared prompts "X ... X {classname}{suffix}" (the name moved by
        `class_token_position`), on the learner's device."""
        return PromptTokens(
            self.input_ids, self.eos_positions, self.n_ctx, self._ctx_start, tuple(self.classnames), self.ctx_positions
        )

    def forward(self, context_shift: torch.Tensor | None = None) -> torch.Tensor:
        """[K, D] normalised class features; with `context_shift` (broadcastable to the context,
        e.g. SHIP's per-sample bias [B, 1, n_ctx, W]) the features of ctx + shift ([B, K, D] if 4-D)."""
        context = self.ctx if context_shift is None else self.ctx + context_shift
        return self.text_encoder(context, self.tokens)

    def extra_repr(self) -> str:
        position = (
            "" if self.class_token_position == "end" else f", class_token_position={self.class_token_position!r}"
        )
        return (
            f"num_classes={len(self.classnames)}, n_ctx={self.n_ctx}, class_specific={self.class_specific}{position}"
        )
