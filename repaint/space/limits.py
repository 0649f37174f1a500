"""What one request may ask of a public server, as one typed value (docs/security.md lists each limit, its default
and the test that checks it). ``Limits.from_env()`` reads the ones a deployment may change."""

from __future__ import annotations

import dataclasses
import os

from ..images import MAX_PIXELS

__all__ = ["LIMITS_ENV", "Limits"]

#: environment variable of each limit a deployment may set, e.g. REPAINT_RUN_S_MAX=1800
LIMITS_ENV = {"run_s_max": "REPAINT_RUN_S_MAX", "gpu_s_max": "REPAINT_GPU_S_MAX", "pixels_max": "REPAINT_PIXELS_MAX"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """``run_s_max``: the longest run, in estimated seconds of model calls, that a server without a GPU accepts (the
    page's defaults and the paper's settings on the bundled model take about a minute of a 2-core CPU; a request
    of many times that would hold the only worker for hours). ``gpu_s_max``: the same on a GPU of the server's own
    (ZeroGPU has its own limit, its longest task). A request over either is refused when its run starts, before
    any model call. ``pixels_max``: the largest image any path takes (the editor's background and layers, the photo
    button, ``/inpaint``'s image and mask file), read from the file's header before anything is decoded; a
    4000x3000 phone photo is 12 megapixels. It may lower, not raise, the library's own ceiling
    (``images.MAX_PIXELS``, its default), which :func:`repaint.images.open_image` keeps."""

    run_s_max: float = 600.0
    gpu_s_max: float = 300.0
    pixels_max: int = MAX_PIXELS

    def __post_init__(self):
        if not 1 <= self.pixels_max <= MAX_PIXELS:
            raise ValueError(f"pixels_max must be from 1 to {MAX_PIXELS:,} (images.MAX_PIXELS), got {self.pixels_max}")

    @classmethod
    def from_env(cls, environ=os.environ) -> Limits:
        """The defaults, with each limit the environment sets (:data:`LIMITS_ENV`) in their place."""
        given = {field: environ.get(name, "").strip() for field, name in LIMITS_ENV.items()}
        try:
            return cls(**{field: type(getattr(cls, field))(value) for field, value in given.items() if value})
        except ValueError:
            raise ValueError(
                f"{', '.join(LIMITS_ENV.values())} must be numbers ({LIMITS_ENV['pixels_max']} at most {MAX_PIXELS:,})"
            ) from None
