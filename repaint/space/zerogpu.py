"""ZeroGPU's slot and quota: the per-call guess where the main process has no GPU, spaces' duration factor, the
quotas."""

from __future__ import annotations

import logging

from .. import models

log = logging.getLogger(__name__)

# Per-call guess on ZeroGPU, where the main process has no GPU to time: the model's TFLOP per call (the registry)
# over an assumed effective throughput at batch 1, at least a floor for launch overheads. An assumption, not a
# measurement (no GPU was lent to this project): ADM-256 (2.24 TFLOP) gets 0.09 s, so the paper's 2,410 calls ask
# for 232 s; each run's own timing replaces the guess (Service.note_run).
ZEROGPU_TFLOPS = 25.0
ZEROGPU_MIN_CALL_S = 0.01
# The guess is widened by this margin before it sizes a slot: a call up to 1.5x slower than assumed (the worker's
# start included) still fits. A run's own measurement replaces guess and margin (Service.note_run).
ZEROGPU_GUESS_MARGIN = 1.5
ZEROGPU_CALL_S = {256: 0.09, 32: ZEROGPU_MIN_CALL_S}  # by resolution, for Hub models the registry does not know
ZEROGPU_SLOT_S = 60  # ZeroGPU's default slot: the page's default settings are charged at most this
# The daily ZeroGPU quota of each kind of visitor (Hugging Face's ZeroGPU docs, 2026; PRO: spaces 0.51.3's
# spaces/zero/client.py, PRO_QUOTA_MINUTES = 40, which is also the longest task ZeroGPU schedules for anyone).
ZEROGPU_QUOTA_S = {"anonymous": 120, "free account": 300, "PRO": 2400}
ZEROGPU_TASK_MAX_S = ZEROGPU_QUOTA_S["PRO"]
# spaces multiplies each request's seconds by its GPU's duration_factor before they are scheduled and charged
# (spaces 0.51.3, spaces/zero/client.py get_duration_seconds, not for 'xlarge' requests; the factors are in
# spaces/zero/configs.json: 1.0 on the H200, 1.5 on the RTX PRO 6000 Blackwell, the hardware ZeroGPU's documentation
# names). Read from spaces itself (zerogpu_duration_factor); this, the largest it knows, where it cannot say.
ZEROGPU_FACTOR_MAX = 1.5


def zerogpu_duration_factor() -> float:
    """The factor spaces applies to a ZeroGPU request's seconds here (its get_duration_seconds, on the GPU model it
    reads from the NVIDIA driver), or ZEROGPU_FACTOR_MAX where spaces cannot say."""
    from datetime import timedelta

    try:
        from spaces.zero.client import get_duration_seconds

        return float(get_duration_seconds(timedelta(seconds=3600), None)) / 3600
    except Exception:  # noqa: BLE001 - no spaces, or not the one this was written for
        log.warning(
            "the ZeroGPU duration factor could not be read from spaces; assuming %s", ZEROGPU_FACTOR_MAX, exc_info=True
        )
        return ZEROGPU_FACTOR_MAX


def gpu_seconds_text(seconds: int, charged: int) -> str:
    """What a run asks of ZeroGPU: ``seconds`` of GPU time, ``charged`` to the visitor's daily quota (the seconds
    times the GPU's duration factor), and whose quotas can pay that."""
    fits = [f"{tier} ({quota} s/day)" for tier, quota in ZEROGPU_QUOTA_S.items() if charged <= quota]
    factor = "" if charged == seconds else f" ({seconds} s x {charged / seconds:.3g}, this GPU's factor)"
    return (
        f"Requests **{charged} s** of ZeroGPU quota{factor}; within the daily quota of: "
        f"{', '.join(fits) if fits else 'no visitor'}"
        + ("" if charged <= ZEROGPU_QUOTA_S["anonymous"] else ". Anonymous visitors: sign in for more.")
    )


def zerogpu_guess(name: str, resolution: int = 256) -> float:
    """Seconds per call at batch 1 on ZeroGPU before any run was timed: registry TFLOP / ZEROGPU_TFLOPS, the model's
    classifier's forward and input gradient included for a model guided by default (imagenet), times
    ZEROGPU_GUESS_MARGIN."""
    info = models.MODELS.get(name)
    if info is not None and info.tflop is not None:
        tflop = info.tflop + (models.CLASSIFIERS[info.classifier].tflop if info.classifier else 0.0)
        return ZEROGPU_GUESS_MARGIN * max(ZEROGPU_MIN_CALL_S, tflop / ZEROGPU_TFLOPS)
    return ZEROGPU_GUESS_MARGIN * ZEROGPU_CALL_S.get(resolution, ZEROGPU_CALL_S[256])
