"""Measure how well RePaint harmonizes on the bundled face model (held-out faces, several masks and seeds).

    python -m repaint.evaluate                      # docs/results.md's table
    python -m repaint.evaluate --images 8 --steps 20 --jump-length 5 --masks left_half

The faces are exactly left-right symmetric with one flat colour per region, so a filling can be judged
against what the known part implies, whatever the filling looks like:
- ``sym``: filled pixels whose mirror pixel is known, against that mirror (mean |difference|, 0-255);
- ``colour``: filled pixels of background, skin and hair, against that region's colour, when the region is
  visible in the known part (mean |difference|, 0-255);
- ``error``: the mean over filled pixels of both references (the mirror where known, else the region colour).
The chance level pastes unconditional samples of the same model into the masked region.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import faces, masks
from .bench import diffusers_repaint
from .loading import load
from .pipeline import Inpainter
from .schedule import jump_schedule

DEFAULT_MASKS = ("left_half", "right_half", "center_box", "thick", "every_second_line", "super_resolution_2x")
COLOUR_REGIONS = (0, 1, 2)  # background, skin, hair


def references(image: np.ndarray, labels: np.ndarray, fill: np.ndarray):
    """Per filled pixel: the mirror pixel if known, and the region colour if the region is visible and flat.

    Returns (mirror_ref, mirror_ok, colour_ref, colour_ok) as (H, W, 3) float and (H, W) bool arrays.
    """
    img = image.astype(np.float64)
    mirror_ok = fill & ~fill[:, ::-1]
    colour_ref = np.zeros_like(img)
    colour_ok = np.zeros_like(fill)
    for region in COLOUR_REGIONS:
        where = labels == region
        known = where & ~fill
        if known.any():
            colour_ref[where] = img[known].mean(axis=0)
            colour_ok |= where & fill
    return img[:, ::-1], mirror_ok, colour_ref, colour_ok


def scores(outputs: np.ndarray, images: np.ndarray, labels: np.ndarray, fills: np.ndarray) -> dict:
    """Mean harmonization errors over a batch (see the module docstring) and the known-pixel check."""
    sym, col, err = [], [], []
    for out, img, lab, fill in zip(outputs.astype(np.float64), images, labels, fills):
        mirror, mirror_ok, colour, colour_ok = references(img, lab, fill)
        own_mirror = out[:, ::-1]  # the filled pixel against the *output's* mirror, i.e. the known pixel there
        d_sym = np.abs(out - own_mirror).mean(axis=2)
        d_col = np.abs(out - colour).mean(axis=2)
        if mirror_ok.any():
            sym.append(d_sym[mirror_ok].mean())
        if colour_ok.any():
            col.append(d_col[colour_ok].mean())
        either = mirror_ok | colour_ok
        if either.any():
            err.append(np.where(mirror_ok, d_sym, d_col)[either].mean())
    known_exact = all(np.array_equal(o[~f], i[~f]) for o, i, f in zip(outputs, images, fills))
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    return dict(sym=mean(sym), colour=mean(col), error=mean(err), known_exact=known_exact)


def _ours(pipe: Inpainter, images, fills, steps, j, r, seeds):
    """The sampler's own pixels (no paste-back), so ``known_exact`` measures the sampler."""
    return pipe.sample(images, fills, [jump_schedule(steps, j, r)] * len(images), seeds, paste=False)


def _chance(pipe: Inpainter, images, fills, steps, seeds):
    """Unconditional samples (nothing known) pasted into the masked region."""
    uncond = pipe.sample(images, np.ones_like(fills), [jump_schedule(steps, 1, 1)] * len(images), seeds)
    return np.where(fills[..., None], uncond, images)


def evaluate(
    pipe: Inpainter,
    *,
    n_images=32,
    seeds=(0, 1),
    steps=50,
    jump_length=5,
    rs=(1, 5, 10),
    mask_names=DEFAULT_MASKS,
    diffusers=True,
    log=print,
) -> list[dict]:
    """Rows of (mask, method, r, errors...), each averaged over ``n_images`` held-out faces and ``seeds``."""
    images, labels = faces.make_faces(n_images, faces.EVAL_SEED, pipe.resolution, return_labels=True)
    methods = [(f"repaint r={r}", r, lambda im, f, s, r=r: _ours(pipe, im, f, steps, jump_length, r, s)) for r in rs]
    if diffusers:
        for eta in (1.0, 0.0):
            for r in (1, max(rs)):
                methods.append(
                    (
                        f"diffusers eta={eta:g} r={r}",
                        r,
                        lambda im, f, s, r=r, eta=eta: diffusers_repaint(pipe, im, f, steps, jump_length, r, s, eta),
                    )
                )
    methods.append(("chance (unconditional)", None, lambda im, f, s: _chance(pipe, im, f, steps, s)))
    rows = []
    for name in mask_names:
        fills = np.stack([masks.preset(name, pipe.resolution, pipe.resolution, seed=i) for i in range(n_images)])
        for label, r, fn in methods:
            start, runs = time.perf_counter(), []
            for seed in seeds:
                per_image = [seed * 100_000 + i for i in range(n_images)]
                runs.append(scores(fn(images, fills, per_image), images, labels, fills))
            row = dict(
                mask=name,
                method=label,
                r=r,
                seconds=time.perf_counter() - start,
                known_exact=all(x["known_exact"] for x in runs),
            )
            for key in ("sym", "colour", "error"):
                vals = [x[key] for x in runs if x[key] is not None]
                row[key] = float(np.mean(vals)) if vals else None
                row[key + "_seed_spread"] = float(np.ptp(vals)) if len(vals) > 1 else None
            rows.append(row)
            log(f"{name:<20} {label:<24} error {row['error']:.2f}  ({row['seconds']:.0f} s)")
    return rows


def markdown(rows: list[dict]) -> str:
    """One table: masks as rows, methods as columns, cells 'error (sym / colour)'."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    names = list(dict.fromkeys(r["mask"] for r in rows))
    cell = {(r["mask"], r["method"]): r for r in rows}
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["| mask | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(fmt(cell[name, m]["error"]) for m in methods) + " |")
    exact = all(r["known_exact"] for r in rows if r["method"].startswith("repaint"))
    lines.append("")
    lines.append(f"Known pixels exactly preserved by this project's sampler in every run: {'yes' if exact else 'NO'}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m repaint.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--images", type=int, default=32, help="held-out faces (default 32)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--jump-length", type=int, default=5)
    p.add_argument("--r", type=int, nargs="+", default=[1, 5, 10], help="jump_n_sample values (default 1 5 10)")
    p.add_argument("--masks", nargs="+", default=list(DEFAULT_MASKS), choices=list(masks.PRESETS))
    p.add_argument("--no-diffusers", action="store_true")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="model precision (default float32)",
    )
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)
    pipe = load(args.model, device="cpu", dtype=args.dtype)
    rows = evaluate(
        pipe,
        n_images=args.images,
        seeds=tuple(args.seeds),
        steps=args.steps,
        jump_length=args.jump_length,
        rs=tuple(args.r),
        mask_names=args.masks,
        diffusers=not args.no_diffusers,
        log=lambda s: print(s, file=sys.stderr),
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(settings=vars(args), rows=rows), f, indent=2)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
