import numpy as np
import pytest
from _official import official_get_schedule_jump

from repaint.schedule import count_model_calls, jump_schedule, noise_tables, space_timesteps


@pytest.mark.parametrize("steps,j,r", [(250, 10, 10), (250, 10, 1), (100, 5, 3), (20, 10, 2), (7, 3, 4), (1, 1, 5)])
def test_matches_official_and_invariants(steps, j, r):
    s = jump_schedule(steps, j, r)
    assert s == official_get_schedule_jump(steps, 1, j, r)
    d = np.diff(s)
    assert s[0] == steps - 1 and s[-1] == -1
    assert set(np.abs(d)) == {1}
    assert min(s) == -1 and max(s) == steps - 1
    assert (d == -1).sum() == count_model_calls(steps, j, r)


def test_paper_defaults_counts():
    d = np.diff(jump_schedule(250, 10, 10))
    assert (d == -1).sum() == 2410
    assert (d == 1).sum() == 2160


def test_no_resampling_is_plain_descent():
    assert jump_schedule(250, 10, 1) == list(range(249, -2, -1))


@pytest.mark.parametrize("bad", [dict(steps=0), dict(jump_length=0), dict(jump_n_sample=0), dict(steps=2.5)])
def test_rejects_bad_arguments(bad):
    args = dict(steps=10, jump_length=2, jump_n_sample=2) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        jump_schedule(**args)


def test_official_respacing_grid():
    grid = space_timesteps(1000, 250)
    assert grid[:3] == [0, 4, 8] and grid[-2:] == [995, 999] and len(grid) == 250
    assert space_timesteps(1000, 1000) == list(range(1000))
    assert space_timesteps(1000, 1) == [0]
    with pytest.raises(ValueError, match="between 1 and 1000"):
        space_timesteps(1000, 1001)


def test_respaced_tables_keep_alphas_cumprod():
    config = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    full = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    tab = noise_tables(config, 250)
    assert tab.alphas_cumprod.dtype == np.float64
    np.testing.assert_allclose(tab.alphas_cumprod, full[space_timesteps(1000, 250)], rtol=0, atol=1e-15)
    # Recomputed betas: the respaced chain reaches the same abar (improved-diffusion SpacedDiffusion).
    np.testing.assert_allclose(np.cumprod(1 - tab.betas), tab.alphas_cumprod, rtol=1e-12)
    assert tab.alphas_cumprod_prev[0] == 1.0
    # fixed_small: posterior variance beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), DDPM eq. 7.
    t = 100
    expect = tab.betas[t] * (1 - tab.alphas_cumprod[t - 1]) / (1 - tab.alphas_cumprod[t])
    assert tab.posterior_variance[t] == pytest.approx(expect, rel=1e-12)
    assert tab.sigma(0) == 0.0
    large = noise_tables(config | {"variance_type": "fixed_large"}, 250)
    np.testing.assert_array_equal(large.posterior_variance, large.betas)
