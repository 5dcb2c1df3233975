"""Fixtures for the testbed tests: a world of tiny synthetic sprites (no dataset files)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hf_clipadapt.testbed.world import ALL_OBJECTS, SceneWorld


def synthetic_sprites(per_object: int = 6, side: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
    """Per object, `per_object` bright blobs on black (a different random mask per object)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    sprites = {}
    for name in ALL_OBJECTS:
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


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def load_example():
    """`load_example("coop")`: the module examples/coop.py, imported from its file."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def small_suites(monkeypatch, world):
    """`small_suites(n_train, n_test)`: examples' `testbed:<suite>` datasets come from the
    session's sprite world with `n_train` / `n_test` images per class, so an example test
    takes seconds."""
    import hf_clipadapt.testbed.suites as suites

    def shrink(n_train_per_class: int, n_test_per_class: int) -> None:
        full = suites.load_suite
        monkeypatch.setattr(suites, "_offline_test_world", lambda: world)
        monkeypatch.setattr(
            suites,
            "load_suite",
            lambda name, seed=0, **kw: full(
                name, seed, n_train_per_class=n_train_per_class, n_test_per_class=n_test_per_class, **kw
            ),
        )

    return shrink
