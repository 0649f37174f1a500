"""Procedural cartoon faces: a tiny stand-in for CelebA-HQ with global structure.

Every face is drawn from a handful of random parameters (colours, face shape,
eye spacing/size, mouth width/curve, hair length) with flat colours and hard
edges. All features are functions of ``|x|`` about the image's vertical axis,
so every image is exactly left-right symmetric: ``img == img[:, ::-1]``.

Each pixel also has a region label (see ``LABELS``); every region has one flat
colour per image, so ``img == palette[labels]`` and colour consistency of an
inpainting can be measured per region.

Seeds. ``make_faces(n, seed)`` draws from ``numpy.random.default_rng(seed)``.
Evaluation uses ``make_faces(n, seed=EVAL_SEED)``. Training never does: it
draws from ``train_rng(seed)``, a separate stream (``SeedSequence`` with
``spawn_key=(TRAIN_STREAM,)``), which no ``make_faces`` seed reproduces.
"""

from __future__ import annotations

import numpy as np

EVAL_SEED = 12345
TRAIN_STREAM = 1000
LABELS = ("background", "skin", "hair", "eyes", "mouth")

_SKIN = np.array([[255, 224, 196], [241, 194, 155], [224, 172, 125], [198, 134, 86], [141, 85, 54], [92, 58, 38]])
_HAIR = np.array([[20, 16, 14], [90, 56, 30], [150, 100, 50], [230, 200, 120], [170, 60, 25], [180, 180, 180]])
_EYES = np.array([[40, 90, 180], [80, 50, 25], [50, 120, 60], [30, 30, 30]])


def train_rng(seed: int) -> np.random.Generator:
    """The training data stream for ``seed``; disjoint from every ``make_faces`` seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(TRAIN_STREAM,)))


def _jitter(rng: np.random.Generator, palette: np.ndarray, amount: float) -> np.ndarray:
    c = palette[rng.integers(len(palette))] + rng.normal(0, amount, 3)
    return np.clip(np.round(c), 0, 255).astype(np.uint8)


def render_face(rng: np.random.Generator, size: int = 32, return_labels: bool = False):
    """Draw one face as ``uint8 (size, size, 3)``; with ``return_labels`` also
    return the ``uint8 (size, size)`` region map indexing ``LABELS``."""
    palette = np.stack(
        [
            rng.integers(0, 256, 3).astype(np.uint8),  # background
            _jitter(rng, _SKIN, 8),
            _jitter(rng, _HAIR, 12),
            _jitter(rng, _EYES, 10),
            np.clip([rng.uniform(150, 220), rng.uniform(40, 90), rng.uniform(50, 100)], 0, 255).astype(np.uint8),
        ]
    )
    fw, fh = rng.uniform(0.48, 0.66), rng.uniform(0.58, 0.76)  # face half-width / half-height
    cy = rng.uniform(0.0, 0.12)  # face centre (y grows downwards, image spans [-1, 1])
    ex, ey, er = rng.uniform(0.18, 0.3), cy - fh * rng.uniform(0.0, 0.2), rng.uniform(0.07, 0.12)
    mw, mc, my = rng.uniform(0.12, 0.3), rng.uniform(-0.08, 0.15), cy + fh * rng.uniform(0.45, 0.6)
    fringe, hair_len = fh * rng.uniform(0.25, 0.5), rng.uniform(-0.2, 0.9)

    c = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres, symmetric about 0
    y, x = np.meshgrid(c, c, indexing="ij")
    ax = np.abs(x)
    lab = np.zeros((size, size), np.uint8)
    lab[((ax / (fw + 0.13)) ** 2 + ((y - cy + 0.05) / (fh + 0.12)) ** 2 <= 1) & (y <= cy + hair_len)] = 2
    lab[(ax <= fw * 0.4) & (y >= cy)] = 1  # neck
    lab[(ax / fw) ** 2 + ((y - cy) / fh) ** 2 <= 1] = 1
    lab[(lab == 1) & (y < cy - fh + fringe + 0.5 * ax**2) & (y < cy)] = 2  # hair cap
    lab[(np.abs(ax - ex) <= er * 1.3) & (np.abs(y - (ey - er - 0.09)) <= 0.045)] = 2  # brows
    lab[((ax - ex) / er) ** 2 + ((y - ey) / (er * 0.8)) ** 2 <= 1] = 3
    lab[(ax <= mw) & (np.abs(y - (my - mc * (ax / mw) ** 2)) <= 0.05)] = 4
    img = palette[lab]
    return (img, lab) if return_labels else img


def make_faces(n: int, seed: int, size: int = 32, return_labels: bool = False):
    """``n`` faces ``uint8 (n, size, size, 3)``, deterministic from ``seed``
    (plus the ``uint8 (n, size, size)`` label maps with ``return_labels``)."""
    rng = np.random.default_rng(seed)
    out = [render_face(rng, size, return_labels=True) for _ in range(n)]
    imgs = np.stack([o[0] for o in out]) if n else np.zeros((0, size, size, 3), np.uint8)
    labs = np.stack([o[1] for o in out]) if n else np.zeros((0, size, size), np.uint8)
    return (imgs, labs) if return_labels else imgs
