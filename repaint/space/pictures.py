"""The pictures the Space shows (gradio-free): masked input, strips, the process GIF and its noise-level plot, and
the image editor's values (dicts of background and layers): masks read from them, mask layers written to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import masks, window
from .errors import ServeError, echo
from .files import held

__all__ = [
    "DISPLAY_SIDE",
    "MASK_RGBA",
    "OUTSIDE_SQUARE_NOTE",
    "PRESET_LABELS",
    "as_array",
    "background_key",
    "editor_event",
    "editor_image",
    "full_size_input",
    "kept_key",
    "level_plot",
    "make_animation",
    "mask_from_editor",
    "mask_layer",
    "page_input",
    "photo_for_editor",
    "preset_mask",
    "preset_value",
    "same_background",
    "show_mask",
    "strip",
    "strokes_outside_square",
    "view_copy",
    "with_background",
]

MASK_RGBA = (30, 90, 255, 128)  # the paper's blue, semi-transparent
PRESET_LABELS = {
    "every_second_line": "Every second line",
    "super_resolution_2x": "x2 super-resolution",
    "left_half": "Left half",
    "right_half": "Right half",
    "top_half": "Top half",
    "bottom_half": "Bottom half",
    "expand": "Expand (outpaint)",
    "center_box": "Centre box",
    "thick": "Thick strokes",
    "thin": "Thin strokes",
    "wide": "Wide boxes",
}  # the page's mask chooser
# gradio 6.31.0: a layer sent from the backend is sized from the bounds of the image container, which also hold the
# brush's invisible preview sprite of canvas_size (800x800 by default); an image under 800 px then gets its layer
# centred in an 800x800 texture, off the image (an older form: gradio #7258 / PR #7959). A 1x1 canvas_size places it
# exactly at every size (app.py's editor).
ANIMATION_TILE = 128  # pixel size of one image tile in the GIF
ANIMATION_PLOT_H = 56  # height of the noise-level plot under the GIF


def preset_mask(name: str, width: int, height: int, resolution: int, seed: int = 0) -> np.ndarray:
    """A preset as the model will see it, drawn at an image of ``width`` x ``height``: bool (height, width).

    The preset is made at the model's resolution and laid (nearest) over the image's centred square, the part the
    model sees; so it maps back to the model's resolution exactly. Outside the square: False.
    """
    if name not in masks.PRESETS:
        raise ValueError(f"unknown mask preset {echo(name)}; choose one of: {', '.join(masks.PRESETS)}")
    small = masks.PRESETS[name](resolution, resolution, int(seed))
    return window.spread(small, window.centre_window(width, height), height, width)


def mask_layer(mask: np.ndarray) -> np.ndarray:
    """A bool mask as an RGBA editor layer: the region in semi-transparent blue, the rest transparent."""
    layer = np.zeros((*mask.shape, 4), dtype=np.uint8)
    layer[mask] = MASK_RGBA
    return layer


def strip(images: list[np.ndarray], height: int) -> np.ndarray:
    """Images side by side, each scaled to ``height`` pixels high, keeping its shape (nearest when enlarging)."""
    tiles = []
    for a in images:
        im = Image.fromarray(a)
        method = Image.Resampling.NEAREST if im.height <= height else Image.Resampling.LANCZOS
        tiles.append(np.asarray(im.resize((max(1, round(im.width * height / im.height)), height), method)))
    return np.concatenate(tiles, axis=1)


def show_mask(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The input as the model sees it: the region to fill in the paper's blue."""
    out = rgb.copy()
    out[mask] = (np.array(MASK_RGBA[:3]) * 0.75 + 255 * 0.25).astype(np.uint8)
    return out


def level_plot(levels: list[list[int]], width: int, steps: int, cursor: int, rows: list[int]) -> Image.Image:
    """The respaced noise level of the chains ``rows`` over the ticks, with a cursor at tick ``cursor``."""
    h = ANIMATION_PLOT_H
    im = Image.new("RGB", (width, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    n = len(levels)
    colours = [(30, 90, 255), (230, 120, 20)]
    top, bottom = 4, h - 12
    for k, row in enumerate(rows):
        pts = []
        for x in range(width):
            i = min(n - 1, x * n // width)
            lv = max(levels[i][row], 0)
            pts.append((x, bottom - (bottom - top) * lv / max(steps - 1, 1)))
        d.line(pts, fill=colours[k % 2], width=1)
    cx = min(width - 1, cursor * width // max(n, 1))
    d.line([(cx, 0), (cx, h)], fill=(200, 0, 0), width=1)
    d.text((3, h - 11), "noise level t over time", fill=(60, 60, 60))
    return im


def make_animation(
    frames: list[tuple[int, np.ndarray, np.ndarray]], levels: list[list[int]], steps: int, rows: list[int], path: Path
) -> Path:
    """GIF of the process: for each chain in ``rows`` x_t and predicted x0, and the noise level plotted under."""
    pics = []
    for tick, xt, x0 in frames:
        top = np.concatenate([strip([xt[r], x0[r]], ANIMATION_TILE) for r in rows], axis=0)
        plot = level_plot(levels, top.shape[1], steps, tick, rows)
        frame = Image.new("RGB", (top.shape[1], top.shape[0] + plot.height), (255, 255, 255))
        frame.paste(Image.fromarray(top), (0, 0))
        frame.paste(plot, (0, top.shape[0]))
        pics.append(frame)
    durations = [80] * (len(pics) - 1) + [1500]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=durations, loop=0, optimize=True)
    return path


# ----------------------------------------------------------------------------------------------- editor values
def as_array(img) -> np.ndarray | None:
    if isinstance(img, (str, Path)):
        img = Image.open(img)
    if isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGBA"))
    return None if img is None else np.asarray(img)


def editor_image(value) -> np.ndarray:
    """The background image of an editor value (uint8 RGB or RGBA); a ServeError when there is none."""
    bg = as_array(value.get("background")) if isinstance(value, dict) else None
    if bg is None or bg.size == 0:
        raise ServeError("No image: upload or pick an image first (or click an example).")
    return bg


def mask_from_editor(value) -> np.ndarray:
    """The region to fill, read from the alpha of the editor's layers: any paint = fill; bool (H, W) of the
    background's size (a layer of another size is scaled to it, nearest)."""
    h, w = editor_image(value).shape[:2]
    region = np.zeros((h, w), dtype=bool)
    for layer in value.get("layers") or []:
        a = as_array(layer)
        if a is not None and a.ndim == 3 and a.shape[2] == 4:
            paint = a[..., 3] > 0
            region |= (
                paint
                if paint.shape == (h, w)
                else np.asarray(Image.fromarray(paint).resize((w, h), Image.Resampling.NEAREST))
            )
    return region


def preset_value(value, preset: str | None, resolution: int, seed: int = 0) -> dict | None:
    """An editor value whose only layer is ``preset`` (None: an empty layer, to draw) at the background's size, or
    None without a background. Only the layer: re-sending the background makes gradio 6.31.0 reload the image and,
    racing that load, add the layer twice (add_layers_from_url runs again when the image becomes ready), so erasing
    removed only one copy."""
    if not isinstance(value, dict) or as_array(value.get("background")) is None:
        return None
    h, w = editor_image(value).shape[:2]
    layer = (
        np.zeros((h, w, 4), dtype=np.uint8)
        if preset is None
        else mask_layer(preset_mask(preset, w, h, resolution, seed))
    )
    return {"background": None, "layers": [layer], "composite": None}


def editor_event(value, shown, draw: bool) -> tuple[bool, np.ndarray | None, list | None]:
    """On any editor event: (draw the preset anew?, the background the editor now shows, its
    :func:`background_key`). A *new* background (an upload, an example) gets the preset; the same background as
    ``shown`` (what the session keeps, see :func:`kept_key`: a stroke, an erase, or the value the app just set) is
    left alone, so painting on a preset keeps it and setting the value cannot loop; so is every one with ``draw``.
    (False, None, None) for the value the app sets: it carries only the layer (see :func:`preset_value`), so the
    server keeps the background for the run."""
    key = background_key(value)
    if key is None:
        return False, None, None
    background = as_array(value["background"])
    return not (draw or same_background(key, kept_key(shown))), background, key


def kept_key(shown) -> list | None:
    """The :func:`background_key` of the image a session keeps (``shown``: a :func:`repaint.space.files.hold`
    value), or None."""
    return shown.get("key") if isinstance(shown, dict) else None


def background_key(value) -> list | None:
    """A coarse fingerprint of the editor's background (its size and an 8x8 thumbnail), or None without one: it
    tells a new image from the same image sent back by the browser after a stroke (which may differ slightly)."""
    bg = as_array(value.get("background")) if isinstance(value, dict) else None
    if bg is None or bg.size == 0:
        return None
    thumb = Image.fromarray(bg[..., :3] if bg.ndim == 3 else bg).convert("L").resize((8, 8), Image.Resampling.BOX)
    return [*bg.shape[:2], *np.asarray(thumb).ravel().tolist()]


def same_background(a: list | None, b: list | None, tolerance: int = 12) -> bool:
    return a is not None and b is not None and a[:2] == b[:2] and max(abs(x - y) for x, y in zip(a, b)) <= tolerance


def carried_background(value) -> np.ndarray | None:
    """The background an editor value carries, or None (a value the app set carries only the layer). A handler that
    sees one records it as the editor's (``shown``): the upload's own event may never have reached the server, since
    the app's next value fires an editor event that supersedes a pending one (trigger_mode "always_last")."""
    return as_array(value.get("background")) if isinstance(value, dict) else None


def with_background(value, shown) -> dict | None:
    """The editor value with its background filled in from ``shown`` (the image the editor shows, as the session
    keeps it: :func:`repaint.space.files.hold`), where the value carries layers but no background: a value the app
    set itself holds only the preset layer (see app.py), and the browser sends that value back unchanged until the
    visitor paints. A value without layers (a cleared editor) is left as it is; so is one whose kept image is gone
    (its run then asks for an image)."""
    if (
        not isinstance(value, dict)
        or shown is None
        or as_array(value.get("background")) is not None
        or not value.get("layers")
    ):
        return value
    background = held(shown)
    return value if background is None else {**value, "background": background}


# ----------------------------------------------------------------------------------------------- phone photos
DISPLAY_SIDE = 800  # longest side of the copy of an uploaded photo the editor shows (and sends back as PNG)


def photo_for_editor(path, pixels_max: int, side: int = DISPLAY_SIDE) -> tuple[dict, dict]:
    """An uploaded photo (a file, kept as it is) for the editor: (an editor value whose background is an upright RGB
    copy at most ``side`` px on its longest side, the original: {"path", "size" (w, h), "key" (the copy's
    :func:`background_key`)}).

    The editor re-encodes its image as PNG on every change; a phone photo (12-50 MP) would be 20-100 MB each time,
    so it gets this copy, and the run reads the original (see :func:`full_size_input`). A photo over ``pixels_max``
    pixels is refused from its file's header, before anything is decoded."""
    from ..images import open_image, to_rgb
    from .requests import pixels_refusal

    if why := pixels_refusal(path, pixels_max, "photo"):
        raise ServeError(why)
    try:
        img = to_rgb(open_image(path), max_side=None)
    except ValueError as e:
        raise ServeError(f"This photo cannot be used: {e}.") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a damaged file
        raise ServeError(
            f"This file could not be read as an image ({type(e).__name__}): it is damaged or not an "
            f"image. Try a PNG, JPEG or WebP file."
        ) from None
    w, h = img.size
    copy = img.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    shown = np.asarray(copy)
    return (
        {"background": shown, "layers": [], "composite": None},
        {"path": str(path), "size": (w, h), "key": background_key({"background": shown})},
    )


def view_copy(a: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """``a`` for viewing in the page: at most ``side`` px on its longest side (a photo's result is not sent to the
    browser at full size twice; the downloads are)."""
    if max(a.shape[:2]) <= side:
        return a
    im = Image.fromarray(a)
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def strokes_outside_square(mask: np.ndarray) -> bool:
    """Any of ``mask`` (bool (H, W)) outside the centred square a preset covers (the part the model sees)."""
    h, w = mask.shape
    inside, _ = window.centre_window(w, h).overlap(h, w)
    rest = mask.copy()
    rest[inside] = False
    return bool(rest.any())


OUTSIDE_SQUARE_NOTE = (
    "You painted outside the preset's centred square: the result keeps your photo's size, filled "
    "through a window around the whole mask."
)


def page_input(editor: dict, mask: np.ndarray, draw: bool, original: dict | None, on_outside=None):
    """The page's run input: (image, mask, full size?). A drawn mask, or a preset with strokes outside its centred
    square (then ``on_outside()`` is called), runs at the photo's own size: the strokes are used; a preset alone at
    the model's square. The image is the original photo where the editor shows its copy."""
    outside = not draw and strokes_outside_square(mask)
    if outside and on_outside is not None:
        on_outside()
    return *full_size_input(editor_image(editor), mask, original), draw or outside


def full_size_input(image: np.ndarray, mask: np.ndarray, original: dict | None):
    """The run's (image, mask): the original photo and the mask scaled up to it (nearest) when the editor shows
    the copy :func:`photo_for_editor` made of it; else the editor's own image and mask."""
    if (
        not original
        or not Path(original["path"]).is_file()
        or not same_background(background_key({"background": image}), original.get("key"))
    ):
        return image, mask  # another image, or the upload swept from the cache (the copy then is what runs)
    w, h = original["size"]
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))
    return original["path"], mask
