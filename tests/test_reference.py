"""The whole RePaint loop against references that share no code with ``repaint``.

1. guided-diffusion (OpenAI's ``guided_diffusion``, as packaged by ``guided-diffusion-sdk``): its ``SpacedDiffusion`` on
   its own ``space_timesteps`` respacing, ``p_mean_variance`` (x_0 from epsilon, clipped, posterior mean and
   variance), ``q_sample``, and the last line of its ``p_sample``, strung together by the paper's Algorithm 1 along
   the official ``get_schedule_jump``. It is fed the same noise draws as :func:`repaint.sampler.sample_repaint`, so
   the two must agree to float32 rounding, for every mask, r, variance type and batch layout.
2. diffusers' ``RePaintPipeline(eta=1)`` at r=1 with clipping off, on a grid where the two must agree.
"""

import copy
import warnings

import numpy as np
import pytest
import torch
from _official import official_get_schedule_jump
from _reference import SIZE, gd_diffusion, model_of, reference_repaint
from _tiny import tiny_unet
from diffusers import RePaintPipeline, RePaintScheduler

from repaint import masks
from repaint.sampler import sample_repaint
from repaint.schedule import noise_tables


def run_both(
    net, config: dict, steps: int, rs: list[int], mask_names: list[str], seeds: list[int], j: int = 2, model=None
):
    """(ours, reference, clipped): one batched ``sample_repaint`` against one reference run per sample (``model``:
    ``model(x, t)`` in place of the UNet's)."""
    c = net.config.in_channels
    model = model or model_of(net, config.get("variance_type", "fixed_small"))
    image = torch.rand(len(seeds), c, SIZE, SIZE, generator=torch.Generator().manual_seed(99)) * 2 - 1
    fill = torch.from_numpy(np.stack([masks.preset(m, SIZE, SIZE, seed=1) for m in mask_names]))[:, None]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    x_T = torch.stack([torch.randn(c, SIZE, SIZE, generator=g) for g in gens])
    tables = noise_tables(config, steps)
    schedules = [official_get_schedule_jump(steps, 1, j, r) for r in rs]
    with torch.no_grad():
        ours = sample_repaint(model, x_T, image, fill, tables, schedules, gens)
        diffusion = gd_diffusion(
            config["beta_schedule"], config.get("variance_type", "fixed_small"), config["num_train_timesteps"], steps
        )
        clipped, ref = [], []
        for b, s in enumerate(seeds):
            g = torch.Generator().manual_seed(s)
            x = torch.randn(1, c, SIZE, SIZE, generator=g)
            keep = (~fill[b : b + 1]).float()
            ref.append(
                reference_repaint(
                    diffusion,
                    model,
                    x,
                    image[b : b + 1],
                    keep,
                    schedules[b],
                    g,
                    config.get("clip_sample", True),
                    clipped,
                )
            )
    return ours, torch.cat(ref), clipped


@pytest.fixture(scope="module")
def net():
    return tiny_unet(SIZE).requires_grad_(False)


def _config(**kw):
    return dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear") | kw


CASES = {  # id: (config changes, steps, r per sample, mask per sample)
    "r1": ({}, 10, [1], ["left_half"]),
    "r3": ({}, 10, [3], ["every_second_line"]),
    "batch": ({}, 8, [2, 2, 2], ["super_resolution_2x", "thick", "center_box"]),
    "compare": ({}, 10, [4, 1], ["thin", "thin"]),  # one batch, two schedules: samples at different levels
    "fixed_large": ({"variance_type": "fixed_large"}, 10, [3, 1], ["left_half", "expand"]),
    "cosine": ({"beta_schedule": "squaredcos_cap_v2"}, 10, [2], ["wide"]),
    "no_clip": ({"clip_sample": False}, 10, [2], ["left_half"]),
    "learned_r1": ({"variance_type": "learned_range"}, 10, [1], ["left_half"]),
    "learned_r3": ({"variance_type": "learned_range"}, 10, [3], ["every_second_line"]),
    "learned_compare": ({"variance_type": "learned_range"}, 10, [4, 1], ["thin", "thin"]),
    "learned_cosine_batch": (
        {"variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2"},
        8,
        [2, 2],
        ["thick", "center_box"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_whole_loop_matches_guided_diffusion(net, case):
    changes, steps, rs, mask_names = CASES[case]
    ours, ref, clipped = run_both(net, _config(**changes), steps, rs, mask_names, seeds=[7 + i for i in range(len(rs))])
    # float32 rounding only: the same expressions in another order, batched rows against single ones. Bound: each
    # transition (step or jump) adds ~10 float32 roundings (eps = 1.2e-7) per value, and none amplifies them (weights
    # on x_t and x_0 sum to at most 1; x_0 is clipped), so n transitions stay within n * 10 * eps of the largest value.
    transitions = max(len(official_get_schedule_jump(steps, 1, 2, r)) for r in rs)
    bound = transitions * 10 * torch.finfo(torch.float32).eps * max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(ours, ref, rtol=0, atol=bound)
    if changes.get("clip_sample", True):
        assert any(clipped), "x_0 was never clipped: the clipped posterior mean would go untested"


@pytest.mark.parametrize("steps", [21, 23])
def test_whole_loop_sees_guided_diffusions_timesteps_on_a_grid_with_ties(net, steps):
    """T = 21 and 23 of 1000 have exact .5 ties in i * stride (999 * 10 / 20 = 499.5), where a rounded product and
    the official running sum part ways. A cheap closed-form model, which depends on the training timestep it is
    given, runs the whole loop: both sides must call it at the same timesteps, in the same order, and agree."""
    seen = []

    def model(x, t):
        seen.append(t.tolist())
        return torch.tanh(x) * torch.cos(t.double() / 97).float()[:, None, None, None]

    ours, ref, _ = run_both(net, _config(), steps, [2], ["thick"], seeds=[3], model=model)
    calls = len(seen) // 2  # ours first, then the reference's (one sample: the same [t] lists)
    assert seen[:calls] == seen[calls:] and len(seen) == 2 * calls
    torch.testing.assert_close(ours, ref, rtol=0, atol=len(official_get_schedule_jump(steps, 1, 2, 2)) * 10 * 1.2e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mask_name", ["left_half", "thick", "super_resolution_2x"])
def test_r1_matches_diffusers_repaint_pipeline_eta1(net, dtype, mask_name):
    """r=1 against diffusers' ``RePaintPipeline(eta=1)`` where the two must agree, to rounding.

    The documented differences are taken out of the comparison, not tolerated:
    - time grid: diffusers runs on k * train_steps / T, ours on the official respacing; with T = train_steps both
      are 0, 1, ..., T-1 (a small model with 50 training steps keeps it fast);
    - forward jumps: diffusers' undo_step uses beta one level low; at r=1 there are none;
    - clipping: with x_0 clipped diffusers goes on along the predicted noise (DDIM form), ours takes the posterior
      mean of the clipped x_0; with clipping off, DDIM eq. 12 at eta=1 is algebraically the DDPM step (eq. 7);
    - tables: diffusers builds alphas_cumprod in float32 from its own betas; given float64 ``trained_betas`` it
      keeps them in float64, as ours are, so only the arithmetic's rounding is left.
    Both merge the known part after each step with the step's one noise draw, and draw x_T then one normal per
    step from the same generator. Bound: per step ~10 roundings on each side, grown at most ~5x through the model
    and the 1/sqrt(alpha) of each step: steps * 100 * eps(dtype) * max|x|.
    diffusers' output is read before its final clamp to [0, 1] (the last ``step``'s ``prev_sample``), which would
    otherwise hide differences in values outside [-1, 1].
    """
    train_steps = 50
    betas = np.linspace(1e-4, 0.02, train_steps)  # float64
    n = copy.deepcopy(net).to(dtype)
    image = (torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)) * 2 - 1).to(dtype)
    fill = torch.from_numpy(masks.preset(mask_name, SIZE, SIZE, seed=2))[None, None]
    sched = RePaintScheduler(num_train_timesteps=train_steps, trained_betas=betas, clip_sample=False)
    assert sched.alphas_cumprod.dtype == torch.float64
    peer = RePaintPipeline(unet=n, scheduler=sched)
    peer.set_progress_bar_config(disable=True)
    outs, step = [], sched.step
    sched.step = lambda *a, **k: (outs.append(step(*a, **k)), outs[-1])[1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The preprocess method is deprecated", category=FutureWarning)
        peer(
            image,
            (~fill).to(dtype),
            num_inference_steps=train_steps,
            eta=1.0,
            jump_length=1,
            jump_n_sample=1,
            generator=torch.Generator().manual_seed(3),
        )  # mask: diffusers 1 = keep
    theirs = outs[-1].prev_sample
    assert len(outs) == train_steps

    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(1, 3, SIZE, SIZE, generator=g, dtype=dtype)
    config = dict(num_train_timesteps=train_steps, trained_betas=betas, clip_sample=False)
    with torch.no_grad():
        ours = sample_repaint(
            lambda x, t: n(x, t).sample,
            x_T,
            image,
            fill,
            noise_tables(config, train_steps),
            [official_get_schedule_jump(train_steps, 1, 1, 1)],
            [g],
        )
    bound = train_steps * 100 * torch.finfo(dtype).eps * float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, rtol=0, atol=bound)
