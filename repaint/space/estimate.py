"""Timing and the estimate's arithmetic: what a model call costs at a batch of rows, and how measured runs refine it."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

GPU_MARGIN_S = 15  # added to the estimate (start-up, transfers, image encoding)
TIMING_CALLS = 3  # forward calls timed once per model at load
CHEAP_CALL_S = 0.1  # a model this fast is also timed at the batch sizes a page run uses (BATCH_ROWS_TIMED) at load,
TIMING_BUDGET_S = 1.5  # in turn with one row, for up to this long
BATCH_ROWS_TIMED = (2, 4, 8)  # 1-4 samples, twice that to compare; between them the cost is interpolated
# What runs measure refines the start-up timing, each row count on its own (Timing.note_run), weighted by the run's
# calls. The start-up timing weighs as much as a run of PRIOR_CALLS calls, about the one-row calls it times (a ZeroGPU
# guess: nothing). It runs alone, so with a browser on the same machine it reads low (docs/space.md has the
# figures). A row count's measure weighs at most RUN_CALLS_MAX calls, so that the estimates follow the machine's
# load now.
PRIOR_CALLS = 10
RUN_CALLS_MAX = 500
GPU_BATCH_COST = 0.5  # extra cost of each further batch row on a GPU, relative to one row (CPU: 1.0), if not timed
# The wait a visitor sees from the click on Inpaint to the results shown is the model calls plus the rest: the page
# run's own work (checks, result files, the GIF; measured by each run, EXTRA_S before the first) and the browser's
# (sending the editor's layers before, showing the results after: PAGE_S, from issue 21's browser measurements in
# docs/space.md).
EXTRA_S = 1.0
PAGE_S = 1.5
EXTRA_PIXELS_MAX = 1_000_000  # larger results are not learned from: the estimate does not know the photo's size


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s:.2f} s"
    if s < 90:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min"


def call_interval(times) -> float:
    """Seconds per model call of a run whose calls came at ``times`` (two or more): the slope of a straight line
    through them (least squares). It leaves out the run's set-up before its first call, and a delay near its start
    or end (the page starting the run) moves it far less than the average from the first call to the last; stalls
    spread through the run (previews) count alike. docs/space.md has the browser measurements."""
    t = np.asarray(times, dtype=np.float64)
    k = np.arange(len(t)) - (len(t) - 1) / 2
    return float(k @ (t - t.mean()) / (k @ k))


def batch_cost(timed: dict[int, float], rows: int, per_row: float) -> float:
    """A call of ``rows`` rows relative to one row: linear between the row counts ``timed`` ({rows: relative cost};
    one row costs 1) and on from the last two; without timings 1 + ``per_row`` * (rows - 1)."""
    points = sorted({1: 1.0, **timed}.items())
    if len(points) == 1:
        return 1 + per_row * (rows - 1)
    (r0, c0), (r1, c1) = next(((a, b) for a, b in zip(points, points[1:]) if rows <= b[0]), points[-2:])
    return c0 + (c1 - c0) * (rows - r0) / (r1 - r0)


def sharing_text(runs: int, estimated: bool = True) -> str:
    """What the page says when ``runs`` other runs share the model's calls (``estimated``: in an estimate)."""
    many = runs > 1
    text = f"{runs} other run{'s' if many else ''} share{'' if many else 's'} the model now"
    return text + (" (the estimate counts them)." if estimated else ".")
