import numpy as np
import torch

from hf_clipadapt.testbed.modeling import build_processor, pixel_values_from_uint8
from hf_clipadapt.testbed.tokenization import build_testbed_tokenizer, build_vocab_and_merges, learn_merges
from hf_clipadapt.testbed.world import grammar_words, pretraining_scenes


def test_every_grammar_word_is_one_token():
    tok = build_testbed_tokenizer()
    for word in grammar_words():
        ids = tok(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (word, tok.convert_ids_to_tokens(ids))
    ids = tok("a photo of a large red ankle boot on a striped background.")["input_ids"]
    assert ids[0] == tok.bos_token_id == 0 and ids[-1] == tok.eos_token_id == 1
    assert len(ids) == 15  # BOS + 12 words + "." + EOS


def test_out_of_grammar_text_falls_back_to_letters_not_unk():
    tok = build_testbed_tokenizer()
    ids = tok("a zebra.", add_special_tokens=False)["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    assert tok.unk_token_id not in ids and len(tokens) > 3
    assert "".join(tokens).replace("</w>", " ").split() == ["a", "zebra", "."]


def test_merges_are_deterministic_and_order_independent():
    words = grammar_words()
    assert learn_merges(words) == learn_merges(list(reversed(words)))
    assert build_vocab_and_merges() == build_vocab_and_merges()


def test_tokenizer_and_processor_round_trip_through_auto_classes(tmp_path):
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, CLIPProcessor

    tok, proc = build_testbed_tokenizer(), build_processor()
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    text = ["a photo of a small cyan t-shirt at the top.", "a dress."]
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    assert AutoImageProcessor.from_pretrained(tmp_path).crop_size == {"height": 48, "width": 48}
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), CLIPProcessor)


def test_fast_pretraining_normalisation_equals_the_image_processor(world):
    images = world.render(pretraining_scenes(world, 4, seed=0))
    proc = build_processor()
    expected = proc(images=list(images), return_tensors="pt")["pixel_values"]
    got = pixel_values_from_uint8(images, proc.image_mean, proc.image_std)
    assert got.shape == expected.shape == (4, 3, 48, 48)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert not np.allclose(got.numpy(), 0)
