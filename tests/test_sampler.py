"""Step functions against their closed forms, the sampler's guarantees, and diffusers' RePaintScheduler as oracle."""

import numpy as np
import pytest
import torch
from _tiny import assert_same_run, tiny_scheduler
from diffusers import RePaintScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from repaint import masks
from repaint.sampler import Chain, call_ticks, ddpm_step, forward_step, q_sample, sample_repaint, schedule_moves
from repaint.schedule import jump_schedule, noise_tables

G = torch.Generator().manual_seed(0)
X0 = torch.rand(1, 3, 4, 4, generator=G) * 2 - 1
XT = torch.randn(1, 3, 4, 4, generator=G)
EPS = torch.randn(1, 3, 4, 4, generator=G)
NOISE = torch.randn(1, 3, 4, 4, generator=G)


def test_q_sample_closed_form():
    abar = 0.3
    expect = np.sqrt(0.3) * X0 + np.sqrt(0.7) * NOISE
    torch.testing.assert_close(q_sample(X0, abar, NOISE), expect)
    assert torch.equal(q_sample(X0, 1.0, NOISE), X0)  # level -1: the image itself, exactly


def test_forward_step_closed_form():
    beta = 0.02
    torch.testing.assert_close(forward_step(XT, beta, NOISE), np.sqrt(0.98) * XT + np.sqrt(0.02) * NOISE)


def test_ddpm_step_closed_form():
    abar, abar_prev = 0.5, 0.6
    beta = 1 - abar / abar_prev
    sigma = np.sqrt(beta * (1 - abar_prev) / (1 - abar))
    x_prev, x0 = ddpm_step(XT, EPS, abar, abar_prev, beta, sigma, NOISE, clip_sample=False)
    x0_expect = (XT - np.sqrt(1 - abar) * EPS) / np.sqrt(abar)  # DDPM eq. 15
    mean = np.sqrt(abar_prev) * beta / (1 - abar) * x0_expect + np.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar) * XT
    torch.testing.assert_close(x0, x0_expect)
    torch.testing.assert_close(x_prev, mean + sigma * NOISE)
    # Clipping bounds the x_0 prediction.
    _, x0c = ddpm_step(XT * 10, EPS, abar, abar_prev, beta, sigma, NOISE)  # clipping is the default
    assert x0c.abs().max() <= 1


def test_ticks_spread_short_chains_evenly():
    ticks = call_ticks([6, 2, 3])
    assert all(0 in t for t in ticks)
    assert sum(1 in t for t in ticks) == 2 and sum(2 in t for t in ticks) == 3
    assert 1 in ticks[-1] and 2 in ticks[-1]  # every chain finishes on the last tick


def _run(pipe, steps=8, j=2, r=2, seed=0, mask="left_half"):
    img = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    return img, pipe.inpaint(img, mask, steps=steps, jump_length=j, jump_n_sample=r, seed=seed)


@pytest.mark.parametrize("mask", ["left_half", "every_second_line", "super_resolution_2x", "thin"])
def test_known_pixels_exact(pipe, mask):
    img, (out,) = _run(pipe, mask=mask)
    rgb, m = pipe.prepare(img, mask)
    out = np.asarray(out)
    assert np.array_equal(out[~m], rgb[~m])
    assert not np.array_equal(out[m], rgb[m])


@pytest.mark.parametrize("rs", [[1], [3], [2, 2, 2], [4, 1]], ids=["r1", "r3", "batch", "compare"])
@pytest.mark.parametrize("mask", ["left_half", "every_second_line", "super_resolution_2x", "thin"])
def test_sampler_itself_returns_known_exactly(pipe, mask, rs):
    """What ``sample_repaint`` returns, before any paste-back: merging after each step (Algorithm 1 line 8) ends on
    the input itself at level -1 (abar = 1), not a prediction. Compare mode ([4, 1]) runs the mixed-level path."""
    tables = noise_tables(dict(tiny_scheduler().config), 6)
    image = torch.rand(len(rs), 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    keep = ~torch.from_numpy(masks.preset(mask, 16, 16, seed=3))
    gens = [torch.Generator().manual_seed(i) for i in range(len(rs))]
    x = torch.stack([torch.randn(3, 16, 16, generator=g) for g in gens])
    out = sample_repaint(pipe.eps, x, image, ~keep[None, None], tables, [jump_schedule(6, 2, r) for r in rs], gens)
    assert torch.equal(out[..., keep], image[..., keep])
    assert not torch.equal(out[..., ~keep], image[..., ~keep])


@pytest.mark.parametrize("mask", ["left_half", "every_second_line", "thick"])
def test_known_pixels_exact_without_paste_back(pipe, mask):
    """The uint8 images as the sampler leaves them (``paste=False``): known pixels equal the input exactly."""
    img = (np.random.default_rng(4).random((2, 16, 16, 3)) * 255).astype(np.uint8)
    fill = np.stack([masks.preset(mask, 16, 16, seed=i) for i in range(2)])
    out = pipe.sample(img, fill, [jump_schedule(8, 2, 3), jump_schedule(8, 2, 1)], [0, 1], paste=False)
    assert np.array_equal(out[~fill], img[~fill])


def test_all_keep_mask_returns_input(pipe):
    img = (np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8)
    keep_all = np.zeros((16, 16), dtype=bool)
    (out,) = pipe.inpaint(img, keep_all, steps=5, jump_length=1, jump_n_sample=1)
    assert np.array_equal(np.asarray(out), img)


def test_merge_happens_after_each_step(pipe):
    """After every model call the known pixels of x_t are q(x_t | x_0) with that step's noise, whatever the model."""
    tables = noise_tables(dict(tiny_scheduler().config), 4)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :, :8] = True
    seen = []
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 16, 16, generator=g)
    sample_repaint(
        pipe.eps,
        x,
        image,
        mask,
        tables,
        [jump_schedule(4, 1, 1)],
        [g],
        callback=lambda i, lv, xt, x0: seen.append((lv[0], xt.clone())),
    )
    replay = torch.Generator().manual_seed(3)
    torch.randn(1, 3, 16, 16, generator=replay)  # x_T
    for level, xt in seen:
        noise = torch.randn(3, 16, 16, generator=replay)
        abar = float(tables.alphas_cumprod_prev[level + 1])  # the level just reached
        expect = abar**0.5 * image[0] + (1 - abar) ** 0.5 * noise  # q(x_t | x_0), DDPM eq. 4 (closed form)
        torch.testing.assert_close(xt[0, :, :, 8:], expect[:, :, 8:])


def test_seeds_are_reproducible_and_differ(pipe):
    _, (a,) = _run(pipe, seed=5)
    _, (b,) = _run(pipe, seed=5)
    _, (c,) = _run(pipe, seed=6)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_batched_samples_equal_separate_runs(pipe):
    """On torch's own threads (two here), where a batch's split between them can move a pixel one level."""
    img = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    kw = dict(steps=8, jump_length=2, jump_n_sample=3)
    batch = pipe.inpaint(img, "center_box", seed=10, num_samples=3, **kw)
    for i, got in enumerate(batch):
        (alone,) = pipe.inpaint(img, "center_box", seed=10 + i, **kw)
        assert_same_run(got, alone)


def test_random_presets_are_exactly_the_presets_that_depend_on_the_seed():
    varies = {
        name
        for name in masks.PRESETS
        if any(not np.array_equal(masks.preset(name, 32, 32, 0), masks.preset(name, 32, 32, s)) for s in (1, 2))
    }
    assert varies == set(masks.RANDOM) == {"thick", "thin", "wide"}


@pytest.mark.usefixtures("one_thread")
@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(masks.PRESETS)),
    seed=st.integers(0, 2**40),
    num_samples=st.integers(2, 3),
    compare=st.booleans(),
    full_size=st.booleans(),
    invert=st.booleans(),
)
def test_batch_sample_i_equals_a_separate_run_with_seed_plus_i(
    pipe, name, seed, num_samples, compare, full_size, invert
):
    """The README's promise, for every preset (random ones draw each sample's mask from its own seed), in inpaint
    and compare, at the model's size and at full size: sample i of a batch is, bit for bit, a run alone with
    seed + i, and its known pixels are those of the mask drawn from seed + i."""
    img = (np.random.default_rng(seed % 7).random((16, 20, 3)) * 255).astype(np.uint8)  # fitting crops columns 2-17
    kw = dict(steps=4, jump_length=2, jump_n_sample=2, invert=invert, full_size=full_size)
    if compare:
        batch, plain = pipe.compare(img, name, seed=seed, num_samples=num_samples, **kw)
    else:
        batch, plain = pipe.inpaint(img, name, seed=seed, num_samples=num_samples, **kw), []
    assert len(batch) == num_samples and len(plain) == (num_samples if compare else 0)
    for i, got in enumerate(batch):
        (alone,) = pipe.inpaint(img, name, seed=seed + i, **kw)
        assert_same_run(got, alone)
        if compare:
            (alone,) = pipe.inpaint(img, name, seed=seed + i, **{**kw, "jump_n_sample": 1})
            assert_same_run(plain[i], alone)
        keep = ~(masks.preset(name, 16, 16, seed + i) ^ invert)
        for out in [got] + plain[i : i + 1]:
            out = np.asarray(out)
            square = out[:, 2:18] if full_size else out
            assert np.array_equal(square[keep], img[:, 2:18][keep])
            if full_size:
                assert np.array_equal(out[:, :2], img[:, :2]) and np.array_equal(out[:, 18:], img[:, 18:])


def test_compare_equals_two_inpaint_calls(pipe):
    img = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    kw = dict(steps=8, jump_length=2, seed=4, num_samples=2)
    resampled, plain = pipe.compare(img, "thick", jump_n_sample=4, **kw)
    for got, want in zip(resampled, pipe.inpaint(img, "thick", jump_n_sample=4, **kw)):
        assert np.array_equal(np.asarray(got), np.asarray(want))
    for got, want in zip(plain, pipe.inpaint(img, "thick", jump_n_sample=1, **kw)):
        assert np.array_equal(np.asarray(got), np.asarray(want))


def test_compare_costs_the_calls_of_the_longest_chain(pipe):
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    ticks, batch = [], []
    eps = pipe.eps
    pipe.eps = lambda x, t: (batch.append(len(x)), eps(x, t))[1]
    try:
        pipe.compare(img, "left_half", steps=10, jump_length=2, jump_n_sample=3, callback=lambda i, *a: ticks.append(i))
    finally:
        del pipe.eps
    assert len(ticks) == len(batch) == pipe.model_calls(10, 2, 3)
    assert batch.count(2) == pipe.model_calls(10, 2, 1)  # the n=1 chain rides along in 10 of the calls


# --- diffusers' RePaintScheduler (eta=1) as an oracle ----------------------------------------------------------------


def test_same_schedule_sequence_as_diffusers():
    sched = RePaintScheduler(num_train_timesteps=1000)
    for steps, j, r in [(250, 10, 10), (50, 5, 3), (20, 10, 1)]:
        sched.set_timesteps(steps, j, r)
        ours = jump_schedule(steps, j, r)
        assert (sched.timesteps.numpy() // (1000 // steps)).tolist() == ours[:-1]


def test_one_step_matches_diffusers_eta1():
    """Same x_t, eps and noise: the merged x_{t-1} agrees with diffusers' step at eta=1 (DDIM eq. 12 at eta=1 is
    the DDPM ancestral step), up to float rounding. Known-pixel mask: diffusers 1 = keep, ours True = fill."""
    sched = RePaintScheduler(num_train_timesteps=1000, clip_sample=False, eta=1.0)
    sched.set_timesteps(50, 5, 1)
    t = int(sched.timesteps[10])
    prev = t - 1000 // 50
    keep = torch.zeros(1, 1, 4, 4)
    keep[..., :2] = 1.0
    out = sched.step(EPS, t, XT, X0, keep, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(XT.shape, generator=torch.Generator().manual_seed(7))
    abar, abar_prev = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[prev])
    beta = 1 - abar / abar_prev
    sigma = float(sched._get_variance(t)) ** 0.5
    unknown, _ = ddpm_step(XT, EPS, abar, abar_prev, beta, sigma, noise, clip_sample=False)
    ours = torch.where(keep.bool(), q_sample(X0, abar_prev, noise), unknown)
    torch.testing.assert_close(ours, out, rtol=1e-5, atol=1e-5)


def test_forward_jump_beta_differs_from_diffusers_by_one_level():
    """Going from level t-1 up to t, q(x_t | x_{t-1}) uses beta_t (the official code: undo at t_last + 1).

    diffusers' undo_step(sample, t_last) uses betas[t_last] .. betas[t_last + n - 1], one training step too low;
    with steps = 1000 (n = 1) that is beta_{t-1} instead of beta_t. Ours uses beta_t.
    """
    sched = RePaintScheduler(num_train_timesteps=1000)
    sched.set_timesteps(1000, 10, 1)
    t_last = 500
    theirs = sched.undo_step(XT, t_last, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(XT.shape, generator=torch.Generator().manual_seed(1))
    betas = noise_tables(dict(tiny_scheduler().config), 1000).betas
    torch.testing.assert_close(theirs, forward_step(XT, float(betas[t_last]), noise))
    ours = forward_step(XT, float(betas[t_last + 1]), noise)
    assert not torch.allclose(ours, theirs, rtol=0, atol=1e-7)


def test_rejects_inconsistent_arguments(pipe):
    tables = noise_tables(dict(tiny_scheduler().config), 4)
    x, image, mask = torch.zeros(2, 3, 16, 16), torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16, dtype=bool)
    s, g = jump_schedule(4, 1, 1), torch.Generator()
    for bad in (dict(x=x[:, 0]), dict(schedules=[s]), dict(generators=[g]), dict(schedules=[s, s, s])):
        args = dict(x=x, schedules=[s, s], generators=[g, g]) | bad
        with pytest.raises(ValueError, match="one schedule and one generator per sample"):
            sample_repaint(pipe.eps, args["x"], image, mask, tables, args["schedules"], args["generators"])
    with pytest.raises(ValueError, match="must start at level 3"):
        sample_repaint(pipe.eps, x, image, mask, tables, [s, jump_schedule(3, 1, 1)], [g, g])
    with pytest.raises(ValueError, match="guidance needs class_labels"):  # a guide without classes to guide towards
        sample_repaint(pipe.eps, x, image, mask, tables, [s, s], [g, g], guide=lambda xa, t, labels: xa)
    Chain(x, image, mask, tables, [s, s], [g, g])  # unguided by default: no class labels needed


def test_a_chains_rows_are_its_next_calls_rows_and_none_once_done(pipe):
    """What a crowd sizes its calls by: in compare mode the plain chain sits out some calls."""
    tables = noise_tables(dict(tiny_scheduler().config), 6)
    schedules = [jump_schedule(6, 2, 3), jump_schedule(6, 2, 1)]
    chain = Chain(
        torch.zeros(2, 3, 16, 16),
        torch.zeros(1, 3, 16, 16),
        torch.ones(1, 1, 16, 16, dtype=bool),
        tables,
        schedules,
        [torch.Generator().manual_seed(i) for i in range(2)],
    )
    seen = []
    while not chain.done:
        xa, t, _ = chain.next_input()
        assert chain.rows() == len(xa) == len(t)
        seen.append(chain.rows())
        chain.take(pipe.eps(xa, t))
    assert chain.rows() == 0 and set(seen) == {1, 2}, seen


@pytest.mark.parametrize(
    "schedule,message",
    [
        ([1, 0], "must end with a denoising step to -1"),
        ([1, 0, -1, 0], "must end with a denoising step to -1"),
        ([1, 0, 2], "moves from 0 to 2"),
    ],
)
def test_bad_schedules_are_refused(schedule, message):
    with pytest.raises(ValueError, match=message):
        schedule_moves(schedule)


def test_callback_levels_in_compare_mode(pipe):
    """Each chain reports the level it has reached: the plain chain (r=1), idle on the first ticks, is still at
    x_T (level T-1), then descends one level per model call to -1; the resampled chain ends at -1 too."""
    steps = 6
    tables = noise_tables(dict(tiny_scheduler().config), steps)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    seen, ticks = [], []

    def callback(tick, levels, x, x0):
        assert x0.shape == x.shape and x0.abs().max() <= 1  # the clipped x_0 prediction of every chain
        ticks.append(tick)
        seen.append(list(levels))

    sample_repaint(
        pipe.eps,
        torch.zeros(2, 3, 16, 16),
        torch.zeros(1, 3, 16, 16),
        torch.ones(1, 1, 16, 16, dtype=torch.bool),
        tables,
        [jump_schedule(steps, 2, 3), jump_schedule(steps, 2, 1)],
        gens,
        callback=callback,
    )
    assert ticks == list(range(len(ticks)))
    plain = [lv[1] for lv in seen]
    assert plain[0] == steps - 1 and plain[-1] == -1 and seen[-1][0] == -1
    assert set(np.diff(plain)) == {0, -1} and plain.count(steps - 1) >= 1
