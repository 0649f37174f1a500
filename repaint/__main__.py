"""Command line: ``python -m repaint --image IN (--mask MASK.png | --preset NAME) --out OUT.png``.

Folder mode (:mod:`repaint.folder`), also under ``accelerate launch -m repaint ...``:
``python -m repaint --image-dir DIR (--mask-dir DIR | --preset NAME) --out-dir OUT``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import folder, masks
from .images import save_png
from .loading import ModelLoadError, load
from .registry import CLASSIFIERS, MODELS
from .settings import LIMITS, Settings


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
    p.add_argument("--image", help="input image (any format and size)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mask", help="mask image of the input's size: white/opaque = fill")
    src.add_argument("--preset", choices=list(masks.PRESETS), metavar="NAME", help="a mask preset (list below)")
    src.add_argument("--mask-dir", help="folder mode: mask files matched to the images by file name")
    p.add_argument(
        "--keep-mask",
        action="store_true",
        help="the mask files are keep masks (white = keep, RePaint's own); a preset always names the fill",
    )
    p.add_argument("--invert", action="store_true", help="invert the mask")
    p.add_argument(
        "--size",
        choices=["auto", "full", "model"],
        default="auto",
        help="full: the image's own size, filled through a window around the mask; model: the centred "
        "square at the model's resolution (default auto: full for --mask, model for --preset)",
    )
    p.add_argument("--out", help="output PNG; with several samples OUT-0.png, OUT-1.png, ...")
    _sampler_args(p)
    _folder_args(p)
    return p


def _sampler_args(p: argparse.ArgumentParser) -> None:
    """The model, the sampler's settings and where it runs."""
    p.add_argument("--model", default="bundled", help="registry name, folder or Hub id (default: bundled)")
    p.add_argument("--steps", type=int, default=250, help="respaced diffusion steps T (default 250)")
    p.add_argument("--jump-length", type=int, default=10, help="resampling jump length j (default 10)")
    p.add_argument("--jump-n-sample", type=int, default=10, help="resamplings r, the paper's n (default 10; 1 = none)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of sample 0; sample i uses seed + i (default 0); "
        "folder mode: the run's seed, hashed with each image's name",
    )
    lo, hi = LIMITS["num_samples"]
    p.add_argument("--num-samples", type=int, default=1, help=f"samples to draw, {lo}..{hi} (default 1)")
    p.add_argument("--compare", action="store_true", help="also write the n=1 result of the same seeds (OUT-n1.png)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="model precision (default: bfloat16 on a CUDA GPU that has it, else float16; float32 on a CPU)",
    )
    p.add_argument(
        "--class-label",
        type=int,
        default=None,
        help="class of a class-conditional model (imagenet: 0-999; default: a random class per sample)",
    )
    lo, hi = LIMITS["classifier_scale"]
    p.add_argument(
        "--classifier-scale",
        type=float,
        default=None,
        help=f"classifier guidance scale, {lo}..{hi} (default: 1 for a model with a classifier, as the "
        "paper's imagenet; 0: unguided, the classifier not even loaded)",
    )
    p.add_argument(
        "--classifier",
        default=None,
        help="noisy-image classifier guiding the model: a name (" + ", ".join(CLASSIFIERS) + "), a "
        "folder (python -m repaint.convert CLASSIFIER.pt DIR) or a released .pt (default: the registry "
        "model's own)",
    )


def _folder_args(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("folder mode (instead of --image/--out; also under `accelerate launch -m repaint`)")
    f.add_argument("--image-dir", help="folder of input images: inpaint each one")
    f.add_argument("--out-dir", help="output folder: inpainted/, gt_masked/, gt/, gt_keep_mask/, manifest.jsonl")
    f.add_argument("--batch-size", type=int, default=1, help="outputs sampled together in one batch (default 1)")
    f.add_argument(
        "--pair",
        choices=("name", "order"),
        default="name",
        help="match masks to images by file stem (default) or by sorted order, as RePaint's loader",
    )


def classifier_arg(args):
    """``load``'s classifier: none for an explicit scale 0 (nothing to download), else the one named or the default."""
    return False if args.classifier_scale == 0 else args.classifier


def settings_arg(args) -> Settings:
    """The sampler's settings the command line names."""
    return Settings(
        steps=args.steps,
        jump_length=args.jump_length,
        jump_n_sample=args.jump_n_sample,
        num_samples=args.num_samples,
        seed=args.seed,
        compare=args.compare,
        class_label=args.class_label,
        classifier_scale=args.classifier_scale,
    )


def _paths(out: Path, n: int, suffix: str = "") -> list[Path]:
    if n == 1:
        return [out.with_name(f"{out.stem}{suffix}{out.suffix or '.png'}")]
    return [out.with_name(f"{out.stem}{suffix}-{i}{out.suffix or '.png'}") for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.image_dir is not None:
        return _folder_mode(args, parser)
    if args.image is None or args.out is None or args.mask_dir is not None or args.out_dir is not None:
        parser.error("give --image and --out (one image), or --image-dir and --out-dir (folder mode)")
    from tqdm import tqdm

    try:
        pipe = load(args.model, device=args.device, dtype=args.dtype, classifier=classifier_arg(args))
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = settings_arg(args)
    options = dict(keep_mask=args.keep_mask, invert=args.invert)
    options["full_size"] = args.size == "full" or (args.size == "auto" and args.mask is not None)
    try:
        total = settings.calls
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
            results, *plain = pipe.run(args.image, mask, settings, callback=progress, **options)
        except (ValueError, OSError) as e:
            bar.close()
            print(f"error: {e}", file=sys.stderr)
            return 2
    plain = plain[0] if plain else []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = list(zip(results, _paths(out, len(results)))) + list(zip(plain, _paths(out, len(plain), "-n1")))
    for img, path in written:
        if path.suffix.lower() == ".png":
            save_png(img, path)
        else:  # another suffix: its own format
            img.save(path)
    print(f"wrote {', '.join(str(p) for _, p in written)} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _folder_mode(args, parser) -> int:
    """Folder mode, ``python -m repaint --image-dir ...``: in one process or in each of accelerate's."""
    if args.out_dir is None or args.image is not None or args.mask is not None or args.out is not None or args.compare:
        parser.error(
            "folder mode takes --image-dir, --mask-dir or --preset, and --out-dir "
            "(not --image, --mask, --out or --compare)"
        )
    if args.size != "auto":  # its outputs are RePaint's: every image fitted to the model's square
        parser.error("folder mode writes the model's resolution (RePaint's layout); --size is for one --image")
    started = time.perf_counter()
    try:
        state = folder.process_state(
            cpu=args.device == "cpu" or (args.device is None and not torch.cuda.is_available())
        )
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _run_cli(args, state, started)
    finally:
        if state.num_processes > 1:  # gloo's threads torn down before exit, or the interpreter may abort at exit
            state.destroy_process_group()


def _run_cli(args, state, started: float) -> int:
    try:
        pipe = load(
            args.model,
            device=folder.process_device(args.device, state),
            dtype=args.dtype,
            classifier=classifier_arg(args),
        )
        summary = folder.run_folder(
            pipe,
            args.image_dir,
            args.out_dir,
            settings_arg(args),
            mask_dir=args.mask_dir,
            preset=args.preset,
            keep_mask=args.keep_mask,
            invert=args.invert,
            pair=args.pair,
            batch_size=args.batch_size,
            state=state,
        )
    except (ModelLoadError, ValueError) as e:  # model, settings or folders: the same in every process
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = folder.gather(state, summary.written)
    failed = folder.gather(state, summary.failed)
    if state.is_main_process:  # the exit status is 0 once the run is through, skipped inputs or not
        print(
            f"wrote {len(written)} outputs to {args.out_dir} ({summary.done_before} already done) in "
            f"{time.perf_counter() - started:.1f} s with {state.num_processes} process(es)"
            + (f"; {len(failed)} input(s) skipped, listed above" if failed else ""),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
