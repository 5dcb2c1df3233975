import re

import numpy as np
import pytest

from hf_clipadapt.testbed.world import (
    ALL_OBJECTS,
    BACKGROUNDS,
    COLOUR_NAMES,
    KNOWN_OBJECTS,
    UNKNOWN_OBJECTS,
    SceneWorld,
    grammar_words,
    held_out_combinations,
    pretraining_scenes,
    seen_combinations,
)


def test_same_seed_same_scenes_images_and_captions(world):
    a, b = pretraining_scenes(world, 24, seed=7), pretraining_scenes(world, 24, seed=7)
    assert a.object == b.object and a.colour == b.colour and (a.sprite_index == b.sprite_index).all()
    np.testing.assert_array_equal(world.render(a), world.render(b))
    assert world.captions(a) == world.captions(b)


def test_different_seeds_differ(world):
    a, b = pretraining_scenes(world, 24, seed=1), pretraining_scenes(world, 24, seed=2)
    assert a.object != b.object or a.colour != b.colour
    assert not np.array_equal(world.render(a), world.render(b))
    assert world.captions(a) != world.captions(b)


def test_render_shape_and_noisy_style_is_noisier(world):
    clean = world.sample(16, 0, objects=["sneaker"], style="clean")
    noisy = world.sample(16, 0, objects=["sneaker"], style="noisy")
    ci, ni = world.render(clean), world.render(noisy)
    assert ci.shape == (16, 48, 48, 3) and ci.dtype == np.uint8
    # Mean absolute difference between horizontal neighbours: pixel noise raises it.
    rough = lambda x: np.abs(np.diff(x.astype(np.float32), axis=2)).mean()  # noqa: E731
    assert rough(ni) > 2 * rough(ci)


def test_colour_is_rendered(world):
    scenes = world.sample(8, 0, combinations=[("red", "zero")])
    scenes.size[:] = ["large"] * 8
    img = world.render(scenes).astype(np.int32)
    red_pixels = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red_pixels.reshape(8, -1).sum(1).min() > 20


def test_split_structure():
    held, seen = set(held_out_combinations()), set(seen_combinations())
    assert not held & seen
    assert held | seen == {(c, o) for o in KNOWN_OBJECTS for c in COLOUR_NAMES}
    assert len(held) == 2 * len(KNOWN_OBJECTS)
    # every object and every colour keeps seen pairs, and every colour is held out somewhere
    assert {o for _, o in seen} == set(KNOWN_OBJECTS)
    assert {c for c, _ in held} == set(COLOUR_NAMES)
    assert not set(UNKNOWN_OBJECTS) & set(KNOWN_OBJECTS)
    assert set(UNKNOWN_OBJECTS) | set(KNOWN_OBJECTS) == set(ALL_OBJECTS)


def _words(caption):
    return caption.rstrip(".").split()


def test_pretraining_never_shows_nor_names_held_out_pairs_or_unknown_objects(world):
    scenes = pretraining_scenes(world, 3000, seed=0)
    pairs = set(zip(scenes.colour, scenes.object))
    assert not pairs & set(held_out_combinations())
    assert not set(scenes.object) & set(UNKNOWN_OBJECTS)
    assert pairs == set(seen_combinations())  # and every seen pair does occur
    captions = world.captions(scenes, p_label_name=0.0)  # as pretraining captions them
    held_phrases = [f" {c} {o}" for c, o in held_out_combinations()]
    for cap in captions:
        words = _words(cap)
        assert not set(words) & set(UNKNOWN_OBJECTS), cap  # "shirt" is not "t-shirt"
        assert not any(p in " " + cap.rstrip(".") + " " for p in held_phrases if not p.endswith(" "))
    # the held-out pairs' words all occur in pretraining captions (web names where they apply)
    from hf_clipadapt.testbed.world import WEB_NAMES

    text = " ".join(captions)
    for c, o in held_out_combinations():
        assert re.search(rf"\b{c}\b", text) and WEB_NAMES.get(o, o) in text


def test_held_out_pair_phrases_absent_from_captions(world):
    captions = world.captions(pretraining_scenes(world, 3000, seed=1))
    joined = "|".join(" " + c.rstrip(".") + " " for c in captions)
    for c, o in held_out_combinations():
        assert f" {c} {o} " not in joined


def test_captions_follow_the_grammar(world):
    vocab = set(grammar_words())
    for cap in world.captions(pretraining_scenes(world, 200, seed=3)):
        assert cap.endswith(".")
        tokens = re.findall(r"[a-z]+|[^\sa-z]+", cap)
        assert set(tokens) <= vocab, cap
    assert set(BACKGROUNDS) <= vocab


def test_sprite_part_restricts_images(world):
    a = world.sample(200, 0, objects=["sneaker"], sprite_part=(0.0, 0.5))
    b = world.sample(200, 0, objects=["sneaker"], sprite_part=(0.5, 1.0))
    assert a.sprite_index.max() < 3 <= b.sprite_index.min()


def test_bad_inputs_raise_helpful_errors(sprites):
    with pytest.raises(ValueError, match="at least one object"):
        SceneWorld({})
    with pytest.raises(ValueError, match=r"\[n, h, w\]"):
        SceneWorld({"sneaker": np.zeros((28, 28), np.uint8)})
    world = SceneWorld({"sneaker": sprites["sneaker"]})
    with pytest.raises(ValueError, match="no sprites for objects"):
        world.sample(2, 0, objects=["bag"])
    with pytest.raises(ValueError, match="style"):
        world.sample(2, 0, style="sketch")


def test_web_names_replace_label_names_only_for_their_objects(world):
    from hf_clipadapt.testbed.world import WEB_NAMES

    assert set(WEB_NAMES) <= set(KNOWN_OBJECTS) and set(WEB_NAMES.values()) <= set(grammar_words())
    assert not set(WEB_NAMES.values()) & set(ALL_OBJECTS)
    scenes = pretraining_scenes(world, 2000, seed=5)
    label = world.captions(scenes, p_object=1.0, p_colour=1.0)  # default: label names
    web = world.captions(scenes, p_object=1.0, p_colour=1.0, p_label_name=0.0)
    half = world.captions(scenes, p_object=1.0, p_colour=1.0, p_label_name=0.5)
    n_web = 0
    for obj, colour, a, b, c in zip(scenes.object, scenes.colour, label, web, half):
        assert f"{colour} {obj}" in a
        if obj in WEB_NAMES:
            assert b == a.replace(f"{colour} {obj}", f"{colour} {WEB_NAMES[obj]}")
            assert c in (a, b)
            n_web += c == b
        else:
            assert a == b == c  # nothing else changes: its own random stream
    n_listed = sum(o in WEB_NAMES for o in scenes.object)
    assert n_listed > 300 and 0.4 < n_web / n_listed < 0.6
    assert not any(re.search(rf"\b{o}\b", cap) for cap in web for o in WEB_NAMES)
