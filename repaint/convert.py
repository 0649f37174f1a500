"""Convert guided-diffusion ("ADM", Dhariwal & Nichol 2021) checkpoints to diffusers folders, exactly.

    python -m repaint.convert places256_300000.pt models/places2              # a known file name: its preset
    python -m repaint.convert ckpt.pt out --preset celeba256
    python -m repaint.convert ckpt.pt out --image_size 64 --num_channels 128 --attention_resolutions 16,8 ...
    python -m repaint.convert places256_300000.pt models/places2 --push-to-hub OWNER/NAME  # also a Hub mirror
    python -m repaint.convert 256x256_classifier.pt models/classifier        # a classifier (repaint.classifier)

Options use guided-diffusion's own names (``script_util.model_and_diffusion_defaults()``, RePaint's YAML confs).
The output is a standard diffusers root layout: ``config.json`` (``UNet2DModel``), safetensors weights and a
``scheduler_config.json`` (``variance_type: learned_range`` when the model learned its variance). Checkpoints are
read with ``torch.load(weights_only=True)`` only. Architectures ``UNet2DModel`` cannot express raise
:class:`UnsupportedArchitecture` instead of giving a silently different model.

``--push-to-hub OWNER/NAME`` checks the written folder against the checkpoint tensor by tensor
(:func:`check_conversion`), adds a model card (``README.md``: source, licence, options, that check) and uploads
the folder with ``huggingface_hub`` (token: ``HF_TOKEN`` or ``hf auth login``; ``HF_ENDPOINT`` picks the server).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .adm import (
    DEFAULTS,
    KNOWN_FILES,
    PRESETS,
    SOURCES,
    UnsupportedArchitecture,
    convert_adm,
    convert_state_dict,
    diffusers_config,
    scheduler_config,
)
from .classifier import (
    CLASSIFIER_DEFAULTS,
    CLASSIFIER_FILES,
    CLASSIFIER_PRESETS,
    convert_classifier,
    is_classifier_state,
)
from .publish import check_conversion, model_card, push_to_hub

__all__ = [
    "DEFAULTS",
    "KNOWN_FILES",
    "PRESETS",
    "SOURCES",
    "UnsupportedArchitecture",
    "check_conversion",
    "convert_adm",
    "convert_state_dict",
    "diffusers_config",
    "model_card",
    "push_to_hub",
    "scheduler_config",
]


def _parse_value(text: str, default):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    return type(default)(text)


def _is_classifier(path: str, preset: str | None, options: dict) -> bool:
    """A classifier checkpoint: its preset, a classifier option, a known classifier file name, or its tensors."""
    if preset is not None:
        return preset in CLASSIFIER_PRESETS
    if any(k.startswith("classifier_") for k in options) or Path(path).name in CLASSIFIER_FILES:
        return True
    try:  # memory-mapped: the keys without reading the tensors
        return is_classifier_state(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    except Exception:  # noqa: BLE001 - not a zip checkpoint, missing file: convert_adm says why
        return False


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(
        prog="python -m repaint.convert",
        description=__doc__.split("\n\n")[0],
        epilog="presets: "
        + ", ".join([*PRESETS, *CLASSIFIER_PRESETS])
        + "\nknown files: "
        + ", ".join([*KNOWN_FILES, *CLASSIFIER_FILES]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="guided-diffusion .pt file (a state dict): a UNet or a classifier")
    p.add_argument("out", help="output folder (diffusers root layout)")
    p.add_argument("--preset", choices=[*PRESETS, *CLASSIFIER_PRESETS], help="options of a released checkpoint")
    p.add_argument(
        "--push-to-hub",
        metavar="OWNER/NAME",
        help="then upload the folder with a model card to this "
        "Hub repository (token: HF_TOKEN or `hf auth login`); UNet checkpoints",
    )
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.add_argument(
        "--license",
        help="with --push-to-hub, for a file that is not a released one: its licence, a Hub "
        "licence id (e.g. mit, cc-by-nc-sa-4.0)",
    )
    p.add_argument("--source", help="with --license: who publishes the weights (for the model card)")
    names = {**DEFAULTS, **CLASSIFIER_DEFAULTS}
    for name, default in names.items():
        p.add_argument(
            f"--{name}",
            type=lambda s, d=default: _parse_value(s, d),
            default=None,
            help=f"guided-diffusion option (default {default!r})",
        )
    return p


def _push(args, out: Path) -> None:
    """--push-to-hub: the folder checked against its checkpoint, given a model card, uploaded."""
    check = check_conversion(args.checkpoint, out)
    licence = None if args.license is None else (args.license, args.license, args.source or "not stated")
    (out / "README.md").write_text(model_card(out, check, licence=licence, repo_id=args.push_to_hub))
    print(
        f"checked: {check['tensors']} tensors, {check['values']:,} values equal the checkpoint's",
        file=sys.stderr,
    )
    try:
        url = push_to_hub(out, args.push_to_hub, private=args.private)
    except Exception as e:  # huggingface_hub's HTTP errors, a missing token, ...: the folder stays written
        raise OSError(
            f"upload to {args.push_to_hub} failed ({type(e).__name__}: {e}); {out} is complete: "
            f"upload it later with `hf upload {args.push_to_hub} {out}`"
        ) from None
    print(f"pushed to {args.push_to_hub}: {url}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    names = {**DEFAULTS, **CLASSIFIER_DEFAULTS}
    args = p.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.push_to_hub and args.license is None and Path(args.checkpoint).name not in SOURCES:
        p.error(f"{Path(args.checkpoint).name} is not a released checkpoint: give --license (and --source)")
    try:
        if _is_classifier(args.checkpoint, args.preset, options):
            unknown = sorted(set(options) - set(CLASSIFIER_DEFAULTS))
            if unknown:
                raise ValueError(f"{', '.join(unknown)}: not classifier options ({', '.join(CLASSIFIER_DEFAULTS)})")
            if args.push_to_hub:
                raise ValueError(
                    "--push-to-hub uploads UNet folders; a classifier's folder can be uploaded with "
                    "`hf upload OWNER/NAME FOLDER`"
                )
            out = convert_classifier(args.checkpoint, args.out, preset=args.preset, **options)
        else:
            unknown = sorted(set(options) - set(DEFAULTS))
            if unknown:
                raise ValueError(f"{', '.join(unknown)}: classifier options, but this is not a classifier checkpoint")
            out = convert_adm(args.checkpoint, args.out, preset=args.preset, **options)
        print(f"wrote {out}", file=sys.stderr)
        if args.push_to_hub:
            _push(args, out)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
