"""Fixtures for the testbed tests: a world of tiny synthetic sprites (no dataset files)."""

import numpy as np
import pytest

from hf_clipadapt.testbed.world import ALL_OBJECTS, SceneWorld


def synthetic_sprites(per_object: int = 6, side: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
    """Per object, `per_object` bright blobs on black (a different random mask per object)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    sprites = {}
    for k, name in enumerate(ALL_OBJECTS):
        arrs = []
        for _ in range(per_object):
            cy, cx = rng.uniform(9, 19, size=2)
            ry, rx = rng.uniform(4, 9, size=2)
            blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            arrs.append((blob * rng.uniform(180, 255)).astype(np.uint8))
        sprites[name] = np.stack(arrs)
    return sprites


@pytest.fixture(scope="session")
def sprites():
    return synthetic_sprites()


@pytest.fixture(scope="session")
def world(sprites):
    return SceneWorld(sprites)
