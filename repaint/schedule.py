"""Time schedules and noise tables, as pure functions.

Everything here is computed once per run, in float64, from a model's own
scheduler config (``num_train_timesteps``, ``beta_start``, ``beta_end``,
``beta_schedule``), and never touched inside the sampling loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseTables", "betas_from_config", "jump_schedule", "noise_tables", "space_timesteps"]


def jump_schedule(steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> list[int]:
    """The paper's resampling schedule (section 4.2) as respaced time indices.

    Starts at ``steps - 1`` and ends at ``-1`` (the clean image). Each consecutive
    pair ``(a, b)`` is a denoising step when ``b == a - 1`` (one model call) or a
    forward re-noising step when ``b == a + 1``. It is the exact sequence of the
    official implementation's ``get_schedule_jump(t_T=steps, n_sample=1,
    jump_length, jump_n_sample)``: every ``jump_length`` levels, the sample is
    pushed back up ``jump_length`` levels, ``jump_n_sample - 1`` times.
    """
    for name, value, low in (("steps", steps, 1), ("jump_length", jump_length, 1), ("jump_n_sample", jump_n_sample, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    jumps = {t: jump_n_sample - 1 for t in range(0, steps - jump_length, jump_length)}
    t = steps
    times: list[int] = []
    while t >= 1:
        t -= 1
        times.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                times.append(t)
    times.append(-1)
    return times


def count_model_calls(steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> int:
    """Number of denoising steps (model calls) in :func:`jump_schedule`, in closed form.

    ``steps`` plain descents plus ``jump_length`` extra descents for each of the
    ``jump_n_sample - 1`` jumps at each of the ``ceil((steps - jump_length) / jump_length)`` jump points.
    """
    points = len(range(0, steps - jump_length, jump_length))
    return steps + points * (jump_n_sample - 1) * jump_length


def space_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """The official respacing grid (improved-diffusion's and RePaint's ``space_timesteps`` with one section).

    ``steps`` indices spread evenly over ``[0, num_train_timesteps - 1]``, so both ends are kept: 250 of 1000 gives
    0, 4, 8, ..., 995, 999 (not diffusers' k * 4). The official code walks the grid by adding the fractional stride
    up in float64 and rounds each position (half to even); so does this, because exact .5 ties of ``i * stride``
    land on the side the running sum's rounding errors put them (T=21 of 1000: 499, not 500).
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be between 1 and {num_train_timesteps} (the model's training steps), got {steps}")
    stride = (num_train_timesteps - 1) / (steps - 1) if steps > 1 else 1.0
    grid, position = [], 0.0
    for _ in range(steps):
        grid.append(round(position))
        position += stride
    return grid


def betas_from_config(config: dict) -> np.ndarray:
    """The training betas of a diffusers DDPM scheduler config, in float64."""
    n = int(config.get("num_train_timesteps", 1000))
    start = float(config.get("beta_start", 1e-4))
    end = float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        return np.asarray(config["trained_betas"], dtype=np.float64)
    if kind == "linear":
        return np.linspace(start, end, n, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
    if kind == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return np.array([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=np.float64)
    raise ValueError(f"unsupported beta_schedule {kind!r} (linear, scaled_linear, squaredcos_cap_v2)")


@dataclass(frozen=True)
class NoiseTables:
    """Float64 tables of a respaced DDPM, indexed by respaced level ``t`` in ``[0, steps)``.

    ``timesteps[t]`` is the training timestep the model sees at level ``t``;
    ``alphas_cumprod_prev[0] == 1`` stands for level ``-1``, the clean image.
    """

    timesteps: np.ndarray
    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    posterior_variance: np.ndarray
    clip_sample: bool
    variance_type: str = "fixed_small"  # fixed_small, fixed_large, or learned_range (the model gives v per pixel)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def learned_range(self) -> bool:
        return self.variance_type == "learned_range"

    def log_variance_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min_log, max_log) per level of the learned range (Improved DDPM eq. 15, guided-diffusion's
        ``p_mean_variance``): the posterior log variance with level 0 clipped to level 1's, and log beta'_t.

        With one level (no level 1) min_log is log beta'_0; level 0 adds no noise either way.
        """
        small = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        min_log = np.log(np.append(small[1], small[1:])) if self.steps > 1 else np.log(self.betas)
        return min_log, np.log(self.betas)

    def fixed_variance(self) -> np.ndarray:
        """The step's variance per level for the fixed types, as guided-diffusion's ``p_mean_variance`` gives it
        (classifier guidance scales its gradient by it): the posterior variance (fixed_small; 0 at level 0), or
        beta'_t with level 0 at level 1's posterior variance (fixed_large, guided-diffusion's choice). A learned
        range's variance is the model's, per pixel (:func:`repaint.sampler.learned_log_variance`)."""
        if self.variance_type != "fixed_large" or self.steps == 1:
            return self.posterior_variance
        small = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        return np.append(small[1], self.betas[1:])

    def sigma(self, t: int) -> float:
        """Std of the ancestral step's noise at level ``t`` (0 at the last step, as in DDPM)."""
        return float(np.sqrt(self.posterior_variance[t])) if t > 0 else 0.0


def noise_tables(config: dict, steps: int) -> NoiseTables:
    """Respace a model's DDPM schedule to ``steps`` levels with recomputed betas.

    beta'_t = 1 - abar[s_t] / abar[s_{t-1}] over the kept timesteps s (improved-diffusion
    ``SpacedDiffusion``), so abar' equals abar on the kept timesteps exactly.
    The ancestral variance follows the config's ``variance_type``: ``fixed_small``
    (posterior variance, DDPM eq. 7), ``fixed_large`` (beta'_t), or ``learned_range``, interpolated between
    the two per pixel by the model's second output half (:meth:`NoiseTables.log_variance_bounds`).
    """
    betas = betas_from_config(config)
    abar_full = np.cumprod(1.0 - betas)
    kept = np.array(space_timesteps(len(betas), steps), dtype=np.int64)
    abar = abar_full[kept]
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    new_betas = 1.0 - abar / abar_prev
    variance_type = config.get("variance_type", "fixed_small")
    if variance_type in ("fixed_small", "fixed_small_log", "learned_range"):
        posterior = new_betas * (1.0 - abar_prev) / (1.0 - abar)
    elif variance_type in ("fixed_large", "fixed_large_log"):
        posterior = new_betas.copy()
    else:
        raise ValueError(f"unsupported variance_type {variance_type!r}")
    return NoiseTables(
        timesteps=kept,
        betas=new_betas,
        alphas_cumprod=abar,
        alphas_cumprod_prev=abar_prev,
        posterior_variance=posterior,
        clip_sample=bool(config.get("clip_sample", True)),
        variance_type="learned_range"
        if variance_type == "learned_range"
        else ("fixed_large" if variance_type.startswith("fixed_large") else "fixed_small"),
    )
