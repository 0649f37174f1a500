import warnings

import numpy as np
import pytest
from _official import official_get_schedule_jump
from hypothesis import given, settings
from hypothesis import strategies as st

from repaint.schedule import betas_from_config, count_model_calls, jump_schedule, noise_tables, space_timesteps


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
    """The defaults are the paper's j=10, r=10 (section 4.2); at T=250 that is 2,410 model calls."""
    assert jump_schedule(250) == official_get_schedule_jump(250, 1, 10, 10)
    assert count_model_calls(250) == 2410
    d = np.diff(jump_schedule(250, 10, 10))
    assert (d == -1).sum() == 2410
    assert (d == 1).sum() == 2160


def test_no_resampling_is_plain_descent():
    assert jump_schedule(250, 10, 1) == list(range(249, -2, -1))


@pytest.mark.parametrize("bad", [dict(steps=0), dict(jump_length=0), dict(jump_n_sample=0), dict(steps=2.5)])
def test_rejects_bad_arguments(bad):
    args = dict(steps=10, jump_length=2, jump_n_sample=2) | bad
    with pytest.raises(ValueError, match=f"^{next(iter(bad))} must be"):
        jump_schedule(**args)


def test_official_respacing_grid():
    grid = space_timesteps(1000, 250)
    assert grid[:3] == [0, 4, 8] and grid[-2:] == [995, 999] and len(grid) == 250
    assert space_timesteps(1000, 1000) == list(range(1000))
    assert space_timesteps(1000, 1) == [0]
    with pytest.raises(ValueError, match="between 1 and 1000"):
        space_timesteps(1000, 1001)


def _gd_space_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from guided_diffusion.respace import space_timesteps as gd_space_timesteps
    return sorted(gd_space_timesteps(num_train_timesteps, [steps]))


def test_respacing_grid_is_guided_diffusions_for_every_step_count():
    """guided-diffusion's ``space_timesteps`` (RePaint's respace.py is the same code) is the oracle, for every T of a
    1000-step model: the grids differ wherever i * stride is an exact .5 tie (T = 21, 23, 31, ...)."""
    assert space_timesteps(1000, 21)[10] == 499  # 999 * 10 / 20 = 499.5: the official running sum lands below it
    for steps in range(1, 1001):
        assert space_timesteps(1000, steps) == _gd_space_timesteps(1000, steps), steps


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.tuples(st.just(4000), st.integers(1, 4000)),
        st.integers(1, 4000).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))),
    )
)
def test_respacing_grid_is_guided_diffusions_for_any_training_length(case):
    """The same oracle for 4000-step models (improved-diffusion's cosine models) and any other training length."""
    assert space_timesteps(*case) == _gd_space_timesteps(*case)


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


@pytest.mark.parametrize(
    "config",
    [
        dict(beta_schedule="linear"),
        dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        dict(beta_schedule="squaredcos_cap_v2"),
        dict(trained_betas=np.linspace(2e-4, 0.03, 1000).tolist()),
    ],
    ids=["linear", "scaled_linear", "squaredcos_cap_v2", "trained_betas"],
)
def test_betas_match_diffusers_ddpm_scheduler(config):
    """diffusers' DDPMScheduler is the oracle for its own config names. It keeps betas in float32, so they agree to
    float32 rounding of values below 1 (eps 1.2e-7, 6e-8 relative per rounding, a few roundings for each)."""
    from diffusers import DDPMScheduler

    ours = betas_from_config(dict(num_train_timesteps=1000) | config)
    theirs = DDPMScheduler(num_train_timesteps=1000, **config).betas.double().numpy()
    assert ours.dtype == np.float64 and ours.shape == (1000,)
    np.testing.assert_allclose(ours, theirs, rtol=5e-7, atol=0)


@pytest.mark.parametrize("ours,theirs", [("linear", "linear"), ("squaredcos_cap_v2", "cosine")])
def test_betas_match_guided_diffusion_in_float64(ours, theirs):
    """guided-diffusion's named schedules (Ho et al.'s linear; Nichol & Dhariwal's cosine, improved DDPM eq. 17
    with beta capped at 0.999) are computed in float64, as ours: equal to double rounding."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from guided_diffusion.gaussian_diffusion import get_named_beta_schedule

    for n in (1000, 50):
        mine = betas_from_config(
            dict(num_train_timesteps=n, beta_schedule=ours, beta_start=1e-4 * 1000 / n, beta_end=0.02 * 1000 / n)
        )
        np.testing.assert_allclose(mine, get_named_beta_schedule(theirs, n), rtol=1e-14, atol=0)


@pytest.mark.parametrize("steps", [2, 3, 10, 50, 250, 1000])  # guided-diffusion cannot build a 1-step chain
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_noise_tables_match_guided_diffusion_spaced_diffusion(steps, variance_type):
    """guided-diffusion's SpacedDiffusion on its own space_timesteps is the oracle for the respaced tables: kept
    timesteps, recomputed betas, alphas_cumprod (and its shift), and the ancestral variance at every level t >= 1
    (at t = 0 no noise is added, by either)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from guided_diffusion.gaussian_diffusion import LossType, ModelMeanType, ModelVarType, get_named_beta_schedule
        from guided_diffusion.respace import SpacedDiffusion
        from guided_diffusion.respace import space_timesteps as gd_space_timesteps

    var = {"fixed_small": ModelVarType.FIXED_SMALL, "fixed_large": ModelVarType.FIXED_LARGE}[variance_type]
    gd = SpacedDiffusion(
        use_timesteps=gd_space_timesteps(1000, [steps]),
        betas=get_named_beta_schedule("linear", 1000),
        model_mean_type=ModelMeanType.EPSILON,
        model_var_type=var,
        loss_type=LossType.MSE,
    )
    tab = noise_tables(dict(num_train_timesteps=1000, beta_schedule="linear", variance_type=variance_type), steps)
    assert tab.timesteps.tolist() == gd.timestep_map
    for ours, theirs in [
        (tab.betas, gd.betas),
        (tab.alphas_cumprod, gd.alphas_cumprod),
        (tab.alphas_cumprod_prev, gd.alphas_cumprod_prev),
    ]:
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    gd_var = gd.posterior_variance if var == ModelVarType.FIXED_SMALL else gd.betas
    np.testing.assert_allclose(tab.posterior_variance[1:], gd_var[1:], rtol=1e-12, atol=0)
    np.testing.assert_allclose([tab.sigma(t) for t in range(1, steps)], np.sqrt(gd_var[1:]), rtol=1e-12, atol=0)
    assert tab.sigma(0) == 0.0


@pytest.mark.parametrize("alias,base", [("fixed_small_log", "fixed_small"), ("fixed_large_log", "fixed_large")])
def test_log_variance_names_give_the_same_variance(alias, base):
    """diffusers' *_log variance types differ from their base only in how the step computes with the variance;
    the tables name the variance by its base (the three names ``NoiseTables.variance_type`` documents)."""
    config = dict(num_train_timesteps=1000, beta_schedule="linear")
    alias_tables, base_tables = (noise_tables(config | {"variance_type": v}, 50) for v in (alias, base))
    np.testing.assert_array_equal(alias_tables.posterior_variance, base_tables.posterior_variance)
    assert alias_tables.variance_type == base_tables.variance_type == base


def test_empty_config_is_diffusers_default_schedule():
    """A config that names nothing gets DDPMScheduler's defaults: 1000 linear betas from 1e-4 to 0.02."""
    from diffusers import DDPMScheduler

    np.testing.assert_allclose(betas_from_config({}), DDPMScheduler().betas.double().numpy(), rtol=5e-7, atol=0)
    # trained_betas of any array type become float64 tables (the module's promise: everything in float64).
    assert betas_from_config(dict(trained_betas=np.linspace(1e-4, 0.02, 10, dtype=np.float32))).dtype == np.float64
