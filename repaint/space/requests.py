"""A run's request: one picklable value with its settings, what checking it gives, and what a finished run hands
back."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..pipeline import Inpainter
from ..settings import Settings
from .errors import ServeError

log = logging.getLogger(__name__)

SIZES = ("auto", "full", "model")  # the API's result size: auto = full for a mask file, the model's for a preset


@dataclass(frozen=True, kw_only=True)
class Request:
    """One run, as both handlers hand it on: checked, then given to the GPU function (picklable, for the ZeroGPU
    worker process). ``image``: an RGB(A) array or an image file; ``mask``: a bool array (True = fill), a mask file
    or a preset name; ``full_size``: the result at the image's own size (else the model's square). A request that
    only sizes a slot or an estimate has no image or mask."""

    model: str
    settings: Settings = Settings()
    image: Any = None
    mask: Any = None
    invert: bool = False
    full_size: bool = False
    stop_key: str | None = None  # the session whose Stop flag the run watches in this process (see Runner.run)
    # The GPU seconds asked of ZeroGPU for this run (stream sets it there): the worker, which cannot know what the
    # main process asked, stops before it would outlast them (Runner.run).
    slot_s: int | None = None


@dataclass
class Checked:
    """A request that passed the checks: its model, and (image, mask) at the result's and at the model's size."""

    model: Inpainter
    big: tuple[np.ndarray, np.ndarray]
    small: tuple[np.ndarray, np.ndarray]


@dataclass
class Finished:
    """A finished run: the n=r results, the n=1 ones (compare), the preview frames and noise levels, the seconds."""

    request: Request
    results: list[np.ndarray]
    plain: list[np.ndarray]
    frames: list = field(default_factory=list)
    levels: list = field(default_factory=list)
    model_seconds: float = 0.0  # the GPU function's own time (the per-call time it measured, times its calls)
    shared: bool = False  # other runs shared its model calls (runner.Done.shared)
    seconds: float = 0.0


def run_rows(settings: Settings) -> dict[int, int]:
    """A run's model calls by their batch rows. A comparison batches its n=1 chains with the n=r ones only at the
    ticks where they call the model (repaint.sampler.call_ticks spreads the shorter chain's calls over the longer
    one's), so only those calls have both chains' rows."""
    rows = settings.num_samples
    both = settings.replace(jump_n_sample=1).calls if settings.compare else 0
    return {r: n for r, n in ((rows, settings.calls - both), (2 * rows, both)) if n}


COMPARE_NEEDS_R = (
    "Compare needs r (resamplings) of 2 or more: with r=1 the n>1 chain is the n=1 chain, so both "
    "results would be the same picture. Raise r, or turn off Compare."
)


def check_compare(settings: Settings) -> None:
    """A comparison of n=1 with n=r is refused for r=1: the two chains would be one."""
    if settings.compare and settings.jump_n_sample == 1:
        raise ServeError(COMPARE_NEEDS_R)


def uploaded_path(value, upload_folder: str) -> str:
    """The path of a file the client uploaded (a FileData dict), refused unless it lies in ``upload_folder`` (Gradio's
    upload cache): no path a client names reaches the file system otherwise."""
    path = value.get("path") if isinstance(value, dict) else None
    resolved = Path(path).resolve() if isinstance(path, str) and path and "\0" not in path else None
    if resolved is None or Path(upload_folder).resolve() not in resolved.parents or not resolved.is_file():
        raise ServeError("The mask file was not uploaded; pass it with gradio_client.handle_file(path).")
    return str(resolved)


def header_size(source) -> tuple[int, int]:
    """(width, height) of an image file (a path or bytes) from its header; nothing is decoded."""
    with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source) as img:
        return img.size


def pixels_refusal(source, pixels_max: int, what: str = "image") -> str | None:
    """Why the image file ``source`` is refused (over ``pixels_max`` pixels, or no image), or None."""
    try:
        w, h = header_size(source)
    except Image.DecompressionBombError:  # PIL's own refusal while reading the header: twice its MAX_IMAGE_PIXELS
        return f"The {what} has more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; this server takes " + (
            f"images of at most {pixels_max / 1e6:.0f} megapixels."
        )
    except Exception:  # noqa: BLE001 - PIL raises many kinds for a file that is not an image
        return f"The {what} could not be read as an image: it is damaged or not an image."
    if w * h <= pixels_max:
        return None
    return (
        f"The {what} is {w}x{h} ({w * h / 1e6:.0f} megapixels); this server takes images of at most "
        f"{pixels_max / 1e6:.0f} megapixels."
    )
