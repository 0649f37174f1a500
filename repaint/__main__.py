"""Command line: ``python -m repaint --image IN (--mask MASK.png | --preset NAME) --out OUT.png``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import masks
from .models import LIMITS, MODELS, ModelLoadError, load


def build_parser() -> argparse.ArgumentParser:
    models = "\n".join(f"  {m.name:<10} {f'{m.resolution}x{m.resolution}':<8} {m.description}" for m in MODELS.values())
    presets = "\n".join(f"  {name:<20} {text}" for name, text in masks.DESCRIPTIONS.items())
    p = argparse.ArgumentParser(
        prog="python -m repaint",
        description="Inpaint an image with RePaint (an unconditional DDPM with resampling). "
        "Masks: white = region to fill.",
        epilog=f"models (--model; or a local folder, or a Hub id owner/name):\n{models}\n\nmask presets (--preset):\n"
        f"{presets}\n\nexample:\n  python -m repaint --image face.png --preset every_second_line --out filled.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--image", required=True, help="input image (any format and size; centre-cropped to a square)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mask", help="mask image of the input's size: white/opaque = fill")
    src.add_argument("--preset", choices=list(masks.PRESETS), metavar="NAME", help="a mask preset (list below)")
    p.add_argument("--keep-mask", action="store_true",
                   help="the mask file is a keep mask (white = keep, RePaint's own); a preset always names the fill")
    p.add_argument("--invert", action="store_true", help="invert the mask")
    p.add_argument("--out", required=True, help="output PNG; with several samples OUT-0.png, OUT-1.png, ...")
    p.add_argument("--model", default="bundled", help="registry name, folder or Hub id (default: bundled)")
    p.add_argument("--steps", type=int, default=250, help="respaced diffusion steps T (default 250)")
    p.add_argument("--jump-length", type=int, default=10, help="resampling jump length j (default 10)")
    p.add_argument("--jump-n-sample", type=int, default=10, help="resamplings r, the paper's n (default 10; 1 = none)")
    p.add_argument("--seed", type=int, default=0, help="seed of sample 0; sample i uses seed + i (default 0)")
    lo, hi = LIMITS["num_samples"]
    p.add_argument("--num-samples", type=int, default=1, help=f"samples to draw, {lo}..{hi} (default 1)")
    p.add_argument("--compare", action="store_true", help="also write the n=1 result of the same seeds (OUT-n1.png)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    return p


def _paths(out: Path, n: int, suffix: str = "") -> list[Path]:
    if n == 1:
        return [out.with_name(f"{out.stem}{suffix}{out.suffix or '.png'}")]
    return [out.with_name(f"{out.stem}{suffix}-{i}{out.suffix or '.png'}") for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    try:
        pipe = load(args.model, device=args.device)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kwargs = dict(steps=args.steps, jump_length=args.jump_length, jump_n_sample=args.jump_n_sample, seed=args.seed,
                  num_samples=args.num_samples, keep_mask=args.keep_mask, invert=args.invert)
    try:
        total = pipe.model_calls(args.steps, args.jump_length, args.jump_n_sample)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with tqdm(total=total, unit="call", desc=f"RePaint {pipe.name}", file=sys.stderr) as bar:
        def progress(tick, levels, x, x0):
            bar.update(1)
            bar.set_postfix(t=max(levels))

        try:
            mask = args.mask if args.mask is not None else args.preset
            if args.compare:
                results, plain = pipe.compare(args.image, mask, callback=progress, **kwargs)
            else:
                results, plain = pipe.inpaint(args.image, mask, callback=progress, **kwargs), []
        except (ValueError, OSError) as e:
            bar.close()
            print(f"error: {e}", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = list(zip(results, _paths(out, len(results)))) + list(zip(plain, _paths(out, len(plain), "-n1")))
    for img, path in written:
        img.save(path)
    print(f"wrote {', '.join(str(p) for _, p in written)} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
