"""The GPU time a run asks for: a ZeroGPU slot sized per request (and charged times the duration factor), or a
cap on a GPU of the server's own; requests that cannot fit are refused before they queue."""

from __future__ import annotations

import math

from ..settings import Settings
from .errors import ServeError
from .estimate import GPU_MARGIN_S, fmt_seconds
from .limits import Limits
from .requests import Request
from .timing import Timing
from .zerogpu import ZEROGPU_TASK_MAX_S, zerogpu_duration_factor, zerogpu_guess

GPU_CAP_S = Limits().gpu_s_max  # on a GPU of the server's own (not ZeroGPU): the longest run, by default


class Slot:
    """Sizes runs' GPU time from :class:`Timing`'s estimates. ``duration_factor``: what ZeroGPU multiplies a
    request's seconds by (:func:`zerogpu_duration_factor` unless given); 1 elsewhere. ``limits``: the longest run
    on a GPU of the server's own, and without a GPU."""

    def __init__(
        self,
        timing: Timing,
        *,
        has_gpu: bool = False,
        on_zerogpu: bool = False,
        duration_factor: float | None = None,
        limits: Limits | None = None,
    ):
        self.timing, self.has_gpu, self.on_zerogpu = timing, has_gpu or on_zerogpu, on_zerogpu
        self.limits = limits or Limits()
        self.duration_factor = 1.0 if not on_zerogpu else duration_factor or zerogpu_duration_factor()

    def gpu_seconds_max(self) -> int:
        """The longest run one request may ask for: on ZeroGPU the longest task it schedules, in seconds before its
        duration factor; on a GPU of the server's own ``limits.gpu_s_max``, so that one visitor cannot hold it for
        long."""
        return int(ZEROGPU_TASK_MAX_S / self.duration_factor) if self.on_zerogpu else int(self.limits.gpu_s_max)

    def gpu_duration(self, req: Request) -> int:
        """ZeroGPU slot length for the GPU function (called with its request): its model calls times the measured
        per-call time, plus a margin, capped at :meth:`gpu_seconds_max` (requests that cannot fit are refused
        before)."""
        if req.slot_s:
            return req.slot_s  # sized when the run was handed to the GPU function (stream)
        est = self.timing.estimate_seconds(req.model, req.settings)
        if est is None:
            est = req.settings.calls * zerogpu_guess(req.model)  # not loaded yet
        return int(min(self.gpu_seconds_max(), math.ceil(est + GPU_MARGIN_S)))

    def charged_seconds(self, req: Request) -> int:
        """The seconds ZeroGPU schedules and charges for the request: :meth:`gpu_duration` times the duration
        factor, rounded as spaces rounds them (get_duration_seconds, then round())."""
        return round(self.gpu_duration(req) * self.duration_factor)

    def too_long(self, est: float) -> str | None:
        """Why a run of ``est`` seconds of model calls is refused, or None: longer than a GPU gives one run, or
        without a GPU longer than ``limits.run_s_max``."""
        if not self.has_gpu:
            return (
                None
                if est <= self.limits.run_s_max
                else f"this server gives one run at most {fmt_seconds(self.limits.run_s_max)}"
            )
        if est + GPU_MARGIN_S <= self.gpu_seconds_max():
            return None
        if self.on_zerogpu:
            return (
                f"ZeroGPU runs a task for at most {ZEROGPU_TASK_MAX_S // 60} min of quota ({self.gpu_seconds_max()}"
                f" s on this GPU, whose seconds count {self.duration_factor:g}x)"
            )
        return f"this server gives one run at most {self.gpu_seconds_max()} s of its GPU"

    def why_not(self, name: str, settings: Settings) -> str | None:
        """What to say when a run of ``settings`` on ``name`` is longer than a run may be, or None (also when its
        time is not known yet: a model not loaded)."""
        est = self.timing.estimate_seconds(name, settings)
        if est is None or (why := self.too_long(est)) is None:
            return None
        where = "GPU time" if self.has_gpu else "model calls"
        return (
            f"This run needs about {fmt_seconds(est)} of {where} ({settings.calls:,} calls): {why}. Use fewer "
            f"steps T, a smaller resample count r, a longer jump length j, fewer samples, or turn off the comparison."
        )

    def check_fits(self, req: Request) -> None:
        """A ServeError that says what to lower when the request is longer than a run may be."""
        if (why := self.why_not(req.model, req.settings)) is not None:
            raise ServeError(why)

    def fitting_settings(self, name: str, slot_s: int) -> Settings:
        """Settings for ``name`` whose ZeroGPU request fits ``slot_s`` seconds: the paper's T=250, j=10 with the
        most resamplings r <= 10 that fit, else fewer steps (T = 200, 150, 100, 50, 25) with r from 10 down."""
        for steps in (250, 200, 150, 100, 50, 25):
            for r in range(10, 0, -1):
                settings = Settings(steps=steps, jump_length=min(10, steps), jump_n_sample=r)
                if self.charged_seconds(Request(model=name, settings=settings)) <= slot_s:
                    return settings
        return Settings(steps=25, jump_length=5, jump_n_sample=1)
