"""What one request may ask of a public server, as one typed value (docs/security.md lists each limit, its default
and the test that checks it). ``Limits.from_env()`` reads the ones a deployment may change."""

from __future__ import annotations

import dataclasses
import os

from ..crowd import ROWS_MAX
from ..images import MAX_PIXELS

__all__ = ["LIMITS_ENV", "Limits"]

#: environment variable of each limit a deployment may set, e.g. REPAINT_RUN_S_MAX=1800
LIMITS_ENV = {
    "run_s_max": "REPAINT_RUN_S_MAX",
    "gpu_s_max": "REPAINT_GPU_S_MAX",
    "pixels_max": "REPAINT_PIXELS_MAX",
    "hub_bytes_max": "REPAINT_HUB_BYTES_MAX",
    "hub_cache_bytes_max": "REPAINT_HUB_CACHE_BYTES_MAX",
    "hub_models_max": "REPAINT_HUB_MODELS_MAX",
    "hub_resolution_max": "REPAINT_HUB_RESOLUTION_MAX",
    "crowd_rows": "REPAINT_CROWD_ROWS",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """``run_s_max``: the longest run, in estimated seconds of model calls, that a server without a GPU accepts (the
    page's defaults and the paper's settings on the bundled model take about a minute of a 2-core CPU; a request
    of many times that would hold the only worker for hours). ``gpu_s_max``: the same on a GPU of the server's own
    (ZeroGPU has its own limit, its longest task). A request over either is refused when its run starts, before
    any model call. ``pixels_max``: the largest image any path takes (the editor's background and layers, the photo
    button, ``/inpaint``'s image and mask file), read from the file's header before anything is decoded; a
    4000x3000 phone photo is 12 megapixels. It may lower, not raise, the library's own ceiling
    (``images.MAX_PIXELS``, its default), which :func:`repaint.images.open_image` keeps.

    Typed Hub ids (``REPAINT_ALLOW_HUB_IDS=1``, :mod:`.hub_ids`): ``hub_bytes_max``, one model's files in all, read
    from the Hub before any is downloaded (google/ddpm-ema-*-256 are 455 MB; the paper's 256x256 ADM models, 2.2 GB,
    are over it); ``hub_cache_bytes_max``, their downloads on disk, the least recently used deleted first;
    ``hub_models_max``, how many are held in memory at once, the least recently used dropped first (so at most
    ``hub_models_max`` x ``hub_bytes_max`` of weights in float32, twice that for a float16 file); and
    ``hub_resolution_max``, the largest image size of one (time and memory per call).

    ``crowd_rows``: off ZeroGPU, the most rows of one model call that the runs sharing a model
    (:mod:`repaint.crowd`) fill; fewer where the model's memory per row and the device's free memory say so
    (:func:`repaint.crowd.sized_rows`); past it they take turns."""

    run_s_max: float = 600.0
    gpu_s_max: float = 300.0
    pixels_max: int = MAX_PIXELS
    hub_bytes_max: int = 1_000_000_000
    hub_cache_bytes_max: int = 4_000_000_000
    hub_models_max: int = 2
    hub_resolution_max: int = 512
    crowd_rows: int = ROWS_MAX

    def __post_init__(self):
        if not 1 <= self.pixels_max <= MAX_PIXELS:
            raise ValueError(f"pixels_max must be from 1 to {MAX_PIXELS:,} (images.MAX_PIXELS), got {self.pixels_max}")
        if not 1 <= self.hub_bytes_max <= self.hub_cache_bytes_max:
            raise ValueError("hub_bytes_max must be at least 1 and at most hub_cache_bytes_max: one model must fit")
        if min(self.hub_models_max, self.hub_resolution_max, self.crowd_rows) < 1:
            raise ValueError("hub_models_max, hub_resolution_max and crowd_rows must be at least 1")

    @classmethod
    def from_env(cls, environ=os.environ) -> Limits:
        """The defaults, with each limit the environment sets (:data:`LIMITS_ENV`) in their place."""
        given = {field: environ.get(name, "").strip() for field, name in LIMITS_ENV.items()}
        try:
            return cls(**{field: type(getattr(cls, field))(value) for field, value in given.items() if value})
        except ValueError:
            raise ValueError(
                f"{', '.join(LIMITS_ENV.values())} must be numbers, whole ones but for the first two "
                f"({LIMITS_ENV['pixels_max']} at most {MAX_PIXELS:,}; {LIMITS_ENV['hub_bytes_max']} at most "
                f"{LIMITS_ENV['hub_cache_bytes_max']})"
            ) from None
