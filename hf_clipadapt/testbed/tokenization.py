"""A word-level tokenizer for the caption grammar, as a stock `CLIPTokenizer`.

It is CLIP's BPE with a vocabulary and merges learned (deterministically, by
`learn_merges`) on the grammar's words, so that every grammar word is
exactly one token and any other text still tokenizes into letters. Because it is
a plain `CLIPTokenizer` with `vocab` + `merges`, it saves with `save_pretrained`
and loads with `AutoTokenizer` like openai/clip-vit-base-patch16's.
"""

from __future__ import annotations

import string

from .world import grammar_words

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 24  # longest grammar caption is 19 tokens with BOS/EOS


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges that turn every word into one symbol, deterministically.

    Plain BPE training (count adjacent symbol pairs, merge the most frequent),
    with ties broken by the pair's spelling, so that the result does not depend on
    hash order (the `tokenizers` trainer's tie-breaking varies between processes).
    Encoding a training word replays the merges in rank order, hence one token.
    """
    seqs = [list(w[:-1]) + [w[-1] + "</w>"] for w in sorted(set(words)) if w]
    merges = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for seq in seqs:
            for pair in zip(seq, seq[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for k, seq in enumerate(seqs):
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[k] = out


def build_vocab_and_merges(words: list[str] | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (specials, single characters with and without CLIP's `</w>`
    end-of-word marker, then merged symbols in merge order) and the merges that
    build each grammar word."""
    words = sorted(set(words if words is not None else grammar_words()))
    alphabet = list(string.ascii_lowercase) + list(string.digits) + list(".,-'!?{}")
    merges = learn_merges(words)
    # Every character in both forms (inside a word and word-final) is in the
    # vocabulary, so words outside the grammar still encode without <unk>.
    vocab = {BOS: 0, EOS: 1}
    for ch in alphabet + sorted({c for w in words for c in w} - set(alphabet)):
        for sym in (ch, ch + "</w>"):
            vocab.setdefault(sym, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


def build_testbed_tokenizer(words: list[str] | None = None, model_max_length: int = MAX_LENGTH):
    """A `CLIPTokenizer` in which every grammar word is a single token."""
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab_and_merges(words)
    return CLIPTokenizer(
        vocab=vocab,
        merges=[(a, b) for a, b in merges],
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=model_max_length,
    )
