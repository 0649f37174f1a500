"""Helpers of the tests that call the app's handlers: a stand-in request, an editor value, a phone photo."""

import numpy as np
from PIL import Image

import app


def ui_request(session: str):
    """A stand-in for gr.Request in direct handler calls: only its session hash is read."""
    return type("Request", (), {"session_hash": session})()


def left_half_editor(face) -> dict:
    """An editor value: the face with the left_half preset as its layer."""
    bg = np.asarray(Image.open(face).convert("RGBA"))
    return {**app.editor_with_preset({"background": bg, "layers": []}, "left_half", "bundled", 0), "background": bg}


def photo(path, size=(4000, 3000), exif_rotate=False):
    """A phone-sized JPEG: left half red-ish, right half green-ish, with grain."""
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    rgb = np.concatenate(
        [
            np.broadcast_to(200 * (x < 0.5) + 40 * y, (h, w, 1)),
            np.broadcast_to(200 * (x >= 0.5) + 30 * y, (h, w, 1)),
            np.broadcast_to(60 + 100 * x * y, (h, w, 1)),
        ],
        axis=2,
    )
    rgb = rgb + np.random.default_rng(0).normal(0, 8, (h, w, 3))  # grain: it compresses like a photo (~2.5 MB)
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    exif = Image.Exif()
    if exif_rotate:
        exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    img.save(path, quality=90, exif=exif)
    return path
