"""The oracle of the sampler's reference tests: guided-diffusion's respaced diffusion, and Algorithm 1 of the paper
written on its primitives."""

import math
import warnings

import torch

with warnings.catch_warnings():  # guided_diffusion.nn uses the deprecated torch.cuda.amp decorators
    warnings.simplefilter("ignore", FutureWarning)
    from guided_diffusion.gaussian_diffusion import LossType, ModelMeanType, ModelVarType, get_named_beta_schedule
    from guided_diffusion.respace import SpacedDiffusion
    from guided_diffusion.respace import space_timesteps as gd_space_timesteps

SIZE = 16
#: The sampler's variance types and guided-diffusion's names for them. With the learned range the model returns 2C
#: channels (eps, then v); ``reference_repaint`` hands the whole output to guided-diffusion, which splits it and
#: computes the variance itself (Improved DDPM eq. 15).
VARIANCE = {
    "fixed_small": ModelVarType.FIXED_SMALL,
    "fixed_large": ModelVarType.FIXED_LARGE,
    "learned_range": ModelVarType.LEARNED_RANGE,
}
#: diffusers' beta_schedule names and guided-diffusion's for the same betas.
BETAS = {"linear": "linear", "squaredcos_cap_v2": "cosine"}


def gd_diffusion(beta_schedule: str, variance_type: str, train_steps: int, steps: int) -> SpacedDiffusion:
    """guided-diffusion's respaced DDPM: its own betas, its own respacing of ``train_steps`` to ``steps``."""
    return SpacedDiffusion(
        use_timesteps=gd_space_timesteps(train_steps, [steps]),
        betas=get_named_beta_schedule(BETAS[beta_schedule], train_steps),
        model_mean_type=ModelMeanType.EPSILON,
        model_var_type=VARIANCE[variance_type],
        loss_type=LossType.MSE,
        rescale_timesteps=False,  # the model sees the training timestep itself (the _WrappedModel maps it)
    )


def reference_repaint(
    diffusion, net, x_T, image, keep, times, gen, clip: bool, clipped: list, cond_fn=None, model_kwargs=None
):
    """Algorithm 1 of the paper (Lugmayr et al. 2022) for one sample, on guided-diffusion's primitives.

    ``times``: the official ``get_schedule_jump``; each pair (t_last, t_cur) is a reverse step at t_last or a jump
    up to t_cur, as in the official ``p_sample_loop_progressive``. ``keep`` is the paper's m (1 = known).
    Noise: one standard normal per jump and one per reverse step, from ``gen``, in schedule order; the reverse step's
    draw serves both the known part (line 5) and the unknown part (line 7). They cover disjoint pixels, so this is
    Algorithm 1's distribution; it is also :func:`sample_repaint`'s documented draw order, which is what lets the
    two be compared draw for draw.
    ``cond_fn``: classifier guidance as guided-diffusion's ``p_sample`` applies it (``condition_mean``, which hands
    ``cond_fn`` the training timestep), with ``model_kwargs`` (the class ``y``) for the model and ``cond_fn``.
    """
    x = x_T
    draw = lambda: torch.randn(x.shape, generator=gen)  # noqa: E731
    record = lambda x0: (clipped.append(bool((x0.abs() > 1).any())), x0)[1]  # noqa: E731  (before the clip)
    for t_last, t_cur in zip(times[:-1], times[1:]):
        if t_cur > t_last:
            # Line 10, x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) with the spaced chain's beta_t
            # (DDPM eq. 2; the official undo() is called at t_last + 1).
            beta = float(diffusion.betas[t_cur])
            x = math.sqrt(1 - beta) * x + math.sqrt(beta) * draw()
            continue
        t = torch.tensor([t_last])
        out = diffusion.p_mean_variance(
            net, x, t, clip_denoised=clip, denoised_fn=record, model_kwargs=model_kwargs
        )  # lines 6-7
        if cond_fn is not None:
            out["mean"] = diffusion.condition_mean(cond_fn, out, x, t, model_kwargs=model_kwargs)
        z = draw()
        unknown = out["mean"] + float(t_last > 0) * torch.exp(0.5 * out["log_variance"]) * z  # p_sample's last line
        known = diffusion.q_sample(image, torch.tensor([t_cur]), noise=z) if t_cur >= 0 else image  # line 5, eq. 8a
        x = keep * known + (1 - keep) * unknown  # line 8
    return x


def model_of(net, variance_type: str):
    """The tiny UNet as ``model(x, t)``; for the learned range with a second half v = tanh(3 x + eps) in (-1, 1), a
    different v in each pixel, sample and level, so each pixel gets its own variance."""

    def learned(x, t):
        eps = net(x, t).sample
        return torch.cat([eps, torch.tanh(3 * x + eps)], dim=1)

    return learned if variance_type == "learned_range" else lambda x, t: net(x, t).sample
