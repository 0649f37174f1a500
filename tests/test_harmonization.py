"""The paper's claim on the bundled model: resampling (r > 1) harmonizes the filling with the known part.

The r=1 error is also held in a band around its measured value. No independent source gives that value (it depends
on this project's trained weights), so the band is measured, over enough seeds to be stable, and wide enough only
for seed noise: a model fed the respaced level instead of its training timestep, or a step with sigma^2 for sigma,
lands far outside it (measured: 20.1 and 6.2). The other plausible slips (forward jump's beta one level low,
unclipped posterior mean, known part at the wrong level) are caught exactly by tests/test_reference.py and
tests/test_sampler.py; docs/mutation.md lists which test catches which.
"""

import numpy as np
import pytest

import repaint
from repaint import faces, masks
from repaint.evaluate import scores
from repaint.schedule import jump_schedule

pytestmark = pytest.mark.heavy

N = 16
#: Mean r=1 error (T=20, j=5, left half, 16 faces) over seeds 0-11, and its spread: 9.36, sd 0.43 per seed
#: (8.74-9.89). The test pools seeds 0-3 (sd of the mean 0.22); the band is +-1.0, about 4.6 of those sd.
R1_MEAN, R1_BAND = 9.36, 1.0
BAND_SEEDS = (0, 1, 2, 3)


def _setup(dtype: str = "float32"):
    pipe = repaint.load("bundled", device="cpu", dtype=dtype)
    imgs, labels = faces.make_faces(N, faces.EVAL_SEED, pipe.resolution, return_labels=True)
    fills = np.stack([masks.preset("left_half", pipe.resolution, pipe.resolution)] * N)
    return pipe, imgs, labels, fills


@pytest.fixture(scope="module")
def setup():
    return _setup()


def _error(setup, r: int, seed: int) -> float:
    pipe, imgs, labels, fills = setup
    out = pipe.sample(imgs, fills, [jump_schedule(20, 5, r)] * N, [seed * 1000 + i for i in range(N)], paste=False)
    s = scores(out, imgs, labels, fills)
    assert s["known_exact"]  # the sampler's own pixels, before any paste-back
    return s["error"]


@pytest.fixture(scope="module")
def plain(setup):
    """r=1 error per seed."""
    return {seed: _error(setup, 1, seed) for seed in BAND_SEEDS}


def test_plain_error_is_in_its_measured_band(plain):
    """Far better than chance (unconditional samples, 87-95) and within seed noise of the measured 9.36."""
    mean = float(np.mean(list(plain.values())))
    assert abs(mean - R1_MEAN) < R1_BAND, plain


@pytest.mark.parametrize("seed", [0, 1])
def test_resampling_beats_plain_on_the_half_mask(setup, plain, seed):
    """With the bundled model, seeds 0-5 gave r=5 at 0.63-0.70x the r=1 error (T=20, j=5, 16 faces); the 0.8x
    bound leaves room for seed noise."""
    r5 = _error(setup, 5, seed)
    assert r5 < 0.8 * plain[seed], (r5, plain[seed])


@pytest.mark.slow
def test_bfloat16_harmonizes_within_seed_noise_of_float32():
    """Reduced precision (the default on a GPU) against float32 on the same faces and seeds: the mean error at r=5
    differs by less than float32's own spread over the seeds (about 3 min on 2 cores)."""
    err = {dtype: [_error(_setup(dtype), 5, seed) for seed in range(3)] for dtype in ("float32", "bfloat16")}
    assert abs(np.mean(err["bfloat16"]) - np.mean(err["float32"])) < np.ptp(err["float32"]), err
