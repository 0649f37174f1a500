"""The RePaint sampler (Lugmayr et al., CVPR 2022, arXiv 2201.09865).

Step functions are pure and take their noise, so each is testable in closed form;
:class:`Chain` strings them together along one resampling schedule per sample, as a state advanced one model call at
a time; :func:`sample_repaint` drives one chain alone (:func:`run_chain`), :mod:`repaint.crowd` many at once.
Images are float tensors in [-1, 1]; masks are bool, True = pixel to fill.

The known part is merged *after* each step, as in the paper's Algorithm 1 (line 8), not before the next model call
as the official code does; so the last step (level 0 -> -1, where abar = 1 and the known part is the input itself)
returns the known pixels exactly, rather than a prediction of them.

The known and unknown parts share one noise draw per step: they cover disjoint pixels, so this is exactly the same
distribution as two independent draws, at half the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .schedule import NoiseTables

__all__ = [
    "Chain",
    "call_ticks",
    "classifier_grad",
    "ddpm_step",
    "denoise_step",
    "forward_step",
    "learned_log_variance",
    "learned_sigma",
    "q_sample",
    "run_chain",
    "sample_repaint",
    "schedule_moves",
]

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, list[int], torch.Tensor, torch.Tensor], None]
#: ``guide(x_t, timesteps, labels) -> scale * grad_x log p(labels | x_t)``, e.g. :func:`classifier_grad`.
Guide = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def q_sample(x0: torch.Tensor, alpha_cumprod, noise: torch.Tensor) -> torch.Tensor:
    """Known part, q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I): paper eq. 8a, Algorithm 1 line 5."""
    return alpha_cumprod**0.5 * x0 + (1 - alpha_cumprod) ** 0.5 * noise


def forward_step(x_prev: torch.Tensor, beta, noise: torch.Tensor) -> torch.Tensor:
    """Re-noising jump, x_t ~ N(sqrt(1 - beta_t) x_{t-1}, beta_t I): Algorithm 1 line 10, with the respaced beta."""
    return (1 - beta) ** 0.5 * x_prev + beta**0.5 * noise


def ddpm_step(x_t, eps, alpha_cumprod, alpha_cumprod_prev, beta, sigma, noise, clip_sample: bool = True, shift=None):
    """Unknown part, one DDPM ancestral step p(x_{t-1} | x_t): Algorithm 1 lines 6-7.

    x_0 is predicted from epsilon (DDPM eq. 15), optionally clipped to [-1, 1], and
    x_{t-1} = mu~(x_t, x_0) + sigma * noise with the posterior mean of DDPM eq. 7.
    ``shift``: added to the mean, classifier guidance's Sigma * grad log p(y | x_t) (Dhariwal & Nichol 2021,
    Algorithm 1: mu + s Sigma grad); None leaves the step as it is. Returns ``(x_prev, x0_pred)``.
    """
    x0 = (x_t - (1 - alpha_cumprod) ** 0.5 * eps) / alpha_cumprod**0.5
    if clip_sample:
        x0 = x0.clamp(-1, 1)
    coef_x0 = alpha_cumprod_prev**0.5 * beta / (1 - alpha_cumprod)
    coef_xt = (1 - beta) ** 0.5 * (1 - alpha_cumprod_prev) / (1 - alpha_cumprod)
    mean = coef_x0 * x0 + coef_xt * x_t
    if shift is not None:
        mean = mean + shift
    return mean + sigma * noise, x0


def learned_sigma(v: torch.Tensor, min_log, max_log) -> torch.Tensor:
    """Per-pixel std of a learned-range step (Improved DDPM eq. 15, as guided-diffusion's ``p_mean_variance``).

    ``v`` in [-1, 1] is the model's second output half; frac = (v + 1) / 2 and the log variance is
    frac * max_log + (1 - frac) * min_log, with max_log = log beta'_t and min_log the clipped log posterior
    variance of the respaced chain (:meth:`repaint.schedule.NoiseTables.log_variance_bounds`).
    """
    return torch.exp(0.5 * learned_log_variance(v, min_log, max_log))


def learned_log_variance(v: torch.Tensor, min_log, max_log) -> torch.Tensor:
    """Per-pixel log variance of a learned-range step, frac * max_log + (1 - frac) * min_log (:func:`learned_sigma`)."""
    frac = (v + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def classifier_grad(classifier, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier guidance's gradient, RePaint's ``cond_fn`` (its test.py, as guided-diffusion's classifier_sample.py):
    ``scale * grad_x sum_b log softmax(classifier(x, t))[b, labels[b]]``.

    ``t``: the training timesteps (the classifier was trained on those, not on a respaced index). Only ``x`` gets a
    gradient (the classifier's parameters need none); runs under ``no_grad`` or ``inference_mode`` callers too.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x_in = x.detach().clone().requires_grad_(True)
        log_probs = torch.log_softmax(classifier(x_in, t.clone()), dim=-1)
        selected = log_probs[torch.arange(len(x_in), device=x.device), labels.clone()]
        return torch.autograd.grad(selected.sum(), x_in)[0] * scale


def schedule_moves(schedule: Sequence[int]) -> list[tuple[list[int], int]]:
    """Split a schedule into its denoising steps, each with the levels re-noised up to just before it."""
    moves, ups = [], []
    for a, b in zip(schedule, schedule[1:]):
        if b == a + 1:
            ups.append(b)
        elif b == a - 1:
            moves.append((ups, a))
            ups = []
        else:
            raise ValueError(f"schedule moves from {a} to {b}: each step must change the level by exactly 1")
    if ups or schedule[-1] != -1:
        raise ValueError("a schedule must end with a denoising step to -1")
    return moves


def call_ticks(counts: Sequence[int]) -> list[list[int]]:
    """For chains with ``counts`` model calls, which chains call the model at each shared tick.

    The longest chain calls at every tick; a shorter one is spread evenly over them,
    so chains finish together and one batched call serves all chains of a tick.
    """
    n = max(counts)
    return [[b for b, c in enumerate(counts) if (k + 1) * c // n > k * c // n] for k in range(n)]


def denoise_step(x, out, noise, image, fill, c, level: int, tables: NoiseTables, grad=None):
    """One denoising step of the rows of ``x``, all at ``level`` (coefficients ``c``), from the model's output:
    Algorithm 1 lines 5-8. ``grad``: the guide's gradient at ``x``, which moves the step's mean by variance * grad
    (guided-diffusion's ``condition_mean``: the variance, not the std; the learned one for a learned range).
    Returns ``(x_{t-1}, x0_pred)``."""
    ch = x.shape[1]
    sigma, variance = c[3], c[6]
    if tables.learned_range:  # level 0 adds no noise (guided-diffusion's nonzero_mask)
        log_variance = learned_log_variance(out[:, ch:], c[4], c[5])
        sigma = torch.exp(0.5 * log_variance) if level > 0 else 0.0
        variance = torch.exp(log_variance) if grad is not None else None
    shift = None if grad is None else variance * grad
    unknown, x0 = ddpm_step(x, out[:, :ch], c[0], c[1], c[2], sigma, noise, tables.clip_sample, shift)  # lines 6-7
    known = q_sample(image, c[1], noise)  # line 5
    return torch.where(fill, unknown, known), x0  # line 8


class Chain:
    """One RePaint run (Algorithm 1 with resampling) as a state to advance, one model call at a time: its rows,
    their levels and the noise each draws from its own generator. The math is :func:`denoise_step`'s and
    :func:`forward_step`'s; whoever calls the model drives it:

    - :meth:`next_input` re-noises the rows whose schedule jumps up here (line 10) and gives the model's input of
      the next call: the rows of x_t, their training timesteps and class labels;
    - :meth:`take` makes the step from the model's output on them (lines 5-8), and the guide's gradient if guided.

    :func:`run_chain` drives one chain alone; :class:`repaint.crowd.Crowd` drives many, sharing each call. The
    arguments are :func:`sample_repaint`'s."""

    def __init__(
        self,
        x: torch.Tensor,
        image: torch.Tensor,
        mask: torch.Tensor,
        tables: NoiseTables,
        schedules: Sequence[Sequence[int]],
        generators: Sequence[torch.Generator],
        *,
        class_labels: torch.Tensor | None = None,
        guided: bool = False,
    ):
        moves = _check(x, schedules, generators, tables, class_labels, guided)
        self.tables, self.generators, self.class_labels = tables, generators, class_labels
        self._table, self._betas = _coefficients(tables), tables.betas.tolist()
        #: channels the model must return: eps, then v for a learned range
        self.channels = x.shape[1] * (2 if tables.learned_range else 1)
        self.x, self.x0_pred, self._noise = x.clone(), torch.zeros_like(x), torch.empty_like(x)
        self._image, self._mask = image.expand_as(x), mask.expand(len(x), 1, *x.shape[2:])
        #: each sample's level (-1: done)
        self.levels = [s[0] for s in schedules]
        self._plan = _plan(moves, len(x), [int(t) for t in tables.timesteps], x.device)
        #: model calls made, of :attr:`total`
        self.tick, self.total = 0, len(self._plan)
        self._pending: tuple | None = None

    @property
    def done(self) -> bool:
        return self.tick == self.total

    def rows(self) -> int:
        """How many rows the next model call takes (0 once done)."""
        return 0 if self.done else len(self._plan[self.tick][0])

    def _draw(self, rows) -> None:
        """A standard normal for each sample in ``rows``, from that sample's own generator."""
        for b in rows:
            torch.randn(self.x.shape[1:], generator=self.generators[b], device=self.x.device, out=self._noise[b])

    def next_input(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(x_t rows, their training timesteps, their class labels or None) of the next model call; the rows are
        re-noised up to it first (Algorithm 1 line 10), once however often this is asked."""
        if self._pending is None:
            active, step, t, rows, _ = self._plan[self.tick]
            self.x = _jump_up(self.x, self._noise, step, active, rows, self._betas, self._draw)
            xa = self.x if rows is None else self.x[rows]
            labels = self.class_labels
            self._pending = xa, t, None if labels is None else labels if rows is None else labels[rows]
        return self._pending

    def take(self, out: torch.Tensor, grad: torch.Tensor | None = None) -> None:
        """One step from the model's output ``out`` on :meth:`next_input`'s rows (and ``grad``, the guide's gradient
        there: guided runs only): Algorithm 1 lines 5-8."""
        if out.shape[1] != self.channels:
            raise ValueError(
                f"the model returned {out.shape[1]} channels, the {self.tables.variance_type} sampler needs "
                f"{self.channels}"
            )
        xa, _, _ = self.next_input()
        active, step, _, rows, groups = self._plan[self.tick]
        self._draw(active)
        every = rows is None
        n, img, fill = (
            (self._noise, self._image, self._mask)
            if every
            else (self._noise[rows], self._image[rows], self._mask[rows])
        )
        merged, x0 = _denoise_rows(xa, out, n, img, fill, step[0][1], groups, self._table, self.tables, grad)
        if every:
            self.x, self.x0_pred = merged, x0
        else:
            self.x[rows], self.x0_pred[rows] = merged, x0
        for b, (_, level) in zip(active, step):
            self.levels[b] = level - 1
        self.tick, self._pending = self.tick + 1, None


def run_chain(model: Model, chain: Chain, callback: Callback | None = None, guide: Guide | None = None) -> torch.Tensor:
    """Drives ``chain`` alone to its end, one model call per tick: returns its x_0. ``model``, ``callback`` and
    ``guide`` as :func:`sample_repaint` takes them."""
    while not chain.done:
        xa, t, labels = chain.next_input()
        out = model(xa, t) if labels is None else model(xa, t, labels)
        chain.take(out, None if guide is None else guide(xa, t, labels))
        if callback is not None:
            callback(chain.tick - 1, list(chain.levels), chain.x, chain.x0_pred)
    return chain.x


def sample_repaint(
    model: Model,
    x: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor,
    tables: NoiseTables,
    schedules: Sequence[Sequence[int]],
    generators: Sequence[torch.Generator],
    callback: Callback | None = None,
    *,
    class_labels: torch.Tensor | None = None,
    guide: Guide | None = None,
) -> torch.Tensor:
    """Inpaint with RePaint: Algorithm 1 with resampling (section 4.2); returns x_0, (B, C, H, W).

    ``model(x, timesteps) -> eps`` (``model(x, timesteps, labels)`` with ``class_labels``), timesteps a long tensor
    of training timesteps, one per row; with ``tables.variance_type == "learned_range"`` it returns 2C channels: eps,
    then v (:func:`learned_sigma`). ``x``: (B, C, H, W) starting noise x_T, one sample per row, drawn by the caller
    from ``generators``, one ``torch.Generator`` per sample: a sample's draws do not depend on the others, so a
    batched run gives each sample the image of a run alone. ``image``: (B or 1, C, H, W) in [-1, 1], only its known
    pixels used; ``mask``: (B or 1, 1, H, W) bool, True = fill. ``tables``: :func:`repaint.schedule.noise_tables`.
    ``schedules``: one :func:`repaint.schedule.jump_schedule` per sample; chains with different schedules (n = 1
    beside n > 1) advance together, one batched model call per tick, each at its own level. ``callback(tick, levels,
    x, x0_pred)`` after each tick, ``levels`` each sample's level (-1 = done); it may raise to cancel the run.
    ``class_labels``: (B,) long, one class per sample. ``guide``: classifier guidance (Dhariwal & Nichol 2021),
    ``guide(x_t, timesteps, labels)`` (e.g. :func:`classifier_grad`) at every denoising step, resampled ones and the
    last included, on the merged x_t the model saw; it moves each step's mean by variance * gradient. Needs
    ``class_labels``; None: unguided, no guide call at all.

    The run is a :class:`Chain` driven alone (:func:`run_chain`).
    """
    chain = Chain(x, image, mask, tables, schedules, generators, class_labels=class_labels, guided=guide is not None)
    return run_chain(model, chain, callback, guide)


def _check(x, schedules, generators, tables: NoiseTables, class_labels, guided: bool) -> list:
    """Each sample's moves, after the checks of :func:`sample_repaint`'s arguments."""
    if x.ndim != 4 or len(schedules) != len(x) or len(generators) != len(x):
        raise ValueError("x must be (B, C, H, W) with one schedule and one generator per sample")
    if guided and class_labels is None:
        raise ValueError("guidance needs class_labels: the class to guide each sample towards")
    moves = [schedule_moves(s) for s in schedules]
    for m in moves:
        if m[0][1] != tables.steps - 1:
            raise ValueError(f"a schedule must start at level {tables.steps - 1} (steps - 1), got {m[0][1]}")
    return moves


def _coefficients(tables: NoiseTables) -> list[tuple]:
    """Per-level coefficients as float64 Python floats: abar, abar_prev, beta, sigma (fixed variances), then
    min_log, max_log (learned range), the fixed variance (guidance). Python floats reach the device as kernel
    arguments, with no copy."""
    bounds = [b.tolist() for b in tables.log_variance_bounds()]
    return list(
        zip(
            tables.alphas_cumprod.tolist(),
            tables.alphas_cumprod_prev.tolist(),
            tables.betas.tolist(),
            [tables.sigma(t) for t in range(tables.steps)],
            *bounds,
            tables.fixed_variance().tolist(),
        )
    )


def _jump_up(x, noise, step, active, rows, betas, draw) -> torch.Tensor:
    """Algorithm 1 line 10: the active rows backed up one level at a time, each with its own (respaced) beta."""
    if all(ups == step[0][0] for ups, _ in step):  # the same jumps for all: one batched op per level
        for up in step[0][0]:
            draw(active)
            if rows is None:
                x = forward_step(x, betas[up], noise)
            else:
                x[rows] = forward_step(x[rows], betas[up], noise[rows])
        return x
    for b, (ups, _) in zip(active, step):
        for up in ups:
            draw([b])
            x[b] = forward_step(x[b], betas[up], noise[b])
    return x


def _denoise_rows(xa, out, n, img, fill, level, groups, table, tables, grad):
    """One reverse step of the active rows, all at ``level``; or, in compare mode (``groups``), each level's rows
    with that level's coefficients, exactly as in a run alone."""
    if not groups:
        return denoise_step(xa, out, n, img, fill, table[level], level, tables, grad)
    merged, x0 = torch.empty_like(xa), torch.empty_like(xa)
    for lv, r in groups:
        g = None if grad is None else grad[r]
        merged[r], x0[r] = denoise_step(xa[r], out[r], n[r], img[r], fill[r], table[lv], lv, tables, g)
    return merged, x0


def _plan(moves, batch: int, timesteps: list[int], device):
    """Each tick's rows, steps and index tensors, worked out before sampling: (active rows, their (ups, level)
    steps, their training timesteps, the active rows as a tensor or None for all, and for rows at different levels
    (compare mode) each level's positions among them).

    All index tensors are views of one tensor copied to the device once: on a GPU, a tensor made from host data in
    every step would wait for the device each time."""
    done = [0] * batch
    ticks, lists = [], []
    for active in call_ticks([len(m) for m in moves]):
        step = [moves[b][done[b]] for b in active]
        for b in active:
            done[b] += 1
        lv = [level for _, level in step]
        levels = sorted(set(lv), reverse=True) if len(set(lv)) > 1 else []
        groups = [[i for i, v in enumerate(lv) if v == level] for level in levels]
        ticks.append((active, step, len(active) < batch, levels))
        lists += [[timesteps[level] for level in lv], *([active] if len(active) < batch else []), *groups]
    flat = torch.tensor([i for lst in lists for i in lst], dtype=torch.long).to(device)
    views = iter(flat.split([len(lst) for lst in lists]))
    plan = []
    for active, step, some, levels in ticks:
        t = next(views)
        rows = next(views) if some else None
        plan.append((active, step, t, rows, [(level, next(views)) for level in levels]))
    return plan
