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
import hashlib
import json
import sys
from pathlib import Path

import torch

from .checkpoints import (
    UnsupportedArchitecture,
    attention_levels,
    preset_of,
    read_checkpoint,
    rename_blocks,
    resnet_keys,
    write_folder,
)
from .classifier import (
    CLASSIFIER_DEFAULTS,
    CLASSIFIER_FILES,
    CLASSIFIER_PRESETS,
    convert_classifier,
    is_classifier_state,
)

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


#: guided-diffusion's defaults (``model_and_diffusion_defaults()``, create_model's keyword defaults where it differs).
DEFAULTS = dict(
    image_size=64,
    num_channels=128,
    num_res_blocks=2,
    channel_mult="",
    attention_resolutions="16,8",
    num_heads=4,
    num_head_channels=-1,
    num_heads_upsample=-1,
    learn_sigma=False,
    class_cond=False,
    use_scale_shift_norm=True,
    resblock_updown=False,
    use_new_attention_order=False,
    dropout=0.0,
    diffusion_steps=1000,
    noise_schedule="linear",
)

_ADM256 = dict(
    image_size=256,
    num_channels=256,
    num_res_blocks=2,
    attention_resolutions="32,16,8",
    num_head_channels=64,
    learn_sigma=True,
    use_scale_shift_norm=True,
    resblock_updown=True,
    diffusion_steps=1000,
    noise_schedule="linear",
)

#: The released checkpoints' options: guided-diffusion's README flags, RePaint's confs/*.yml.
PRESETS: dict[str, dict] = {
    "celeba256": dict(_ADM256, num_heads=4),  # RePaint confs/face_example.yml, test_c256_*.yml
    "places256": dict(_ADM256, num_heads=4),  # RePaint confs/test_p256_*.yml
    "imagenet256": dict(_ADM256, class_cond=True),  # guided-diffusion 256x256_diffusion.pt
    "imagenet256_uncond": dict(_ADM256),  # guided-diffusion 256x256_diffusion_uncond.pt
    "lsun256": dict(_ADM256, dropout=0.1),  # guided-diffusion lsun_{bedroom,cat,horse}.pt
    "imagenet64": dict(
        image_size=64,
        num_channels=192,
        num_res_blocks=3,
        attention_resolutions="32,16,8",
        num_head_channels=64,
        learn_sigma=True,
        class_cond=True,
        use_scale_shift_norm=True,
        resblock_updown=True,
        use_new_attention_order=True,
        dropout=0.1,
        noise_schedule="cosine",
    ),
    # Listed so that their known file names give the clear error below rather than a guess.
    "imagenet128": dict(
        image_size=128,
        num_channels=256,
        num_res_blocks=2,
        attention_resolutions="32,16,8",
        num_heads=4,
        learn_sigma=True,
        class_cond=True,
        use_scale_shift_norm=True,
        resblock_updown=True,
    ),
    "imagenet512": dict(
        image_size=512,
        num_channels=256,
        num_res_blocks=2,
        attention_resolutions="32,16,8",
        num_head_channels=64,
        learn_sigma=True,
        class_cond=True,
        use_scale_shift_norm=True,
        resblock_updown=True,
    ),  # guided-diffusion's README runs 512x512_diffusion.pt with it
}

#: Released file names and their presets (``repaint.load("…/places256_300000.pt")`` uses these).
KNOWN_FILES = {
    "celeba256_250000.pt": "celeba256",
    "places256_300000.pt": "places256",
    "256x256_diffusion.pt": "imagenet256",
    "256x256_diffusion_uncond.pt": "imagenet256_uncond",
    "lsun_bedroom.pt": "lsun256",
    "lsun_cat.pt": "lsun256",
    "lsun_horse.pt": "lsun256",
    "64x64_diffusion.pt": "imagenet64",
    "128x128_diffusion.pt": "imagenet128",
    "512x512_diffusion.pt": "imagenet512",
}

#: Who publishes the released checkpoints, under which licence (Hugging Face licence ids).
_REPAINT_SRC = (
    "CC BY-NC-SA 4.0",
    "cc-by-nc-sa-4.0",
    "RePaint (Lugmayr et al., CVPR 2022, arXiv 2201.09865), https://github.com/andreas128/RePaint (download.sh)",
)
_OPENAI_SRC = (
    "MIT",
    "mit",
    "guided-diffusion (Dhariwal & Nichol 2021, arXiv 2105.05233), https://github.com/openai/guided-diffusion",
)
SOURCES: dict[str, tuple[str, str, str]] = {
    name: _REPAINT_SRC if name.startswith(("celeba256", "places256")) else _OPENAI_SRC for name in KNOWN_FILES
}

_NUM_CLASSES = 1000  # guided_diffusion.script_util.NUM_CLASSES


def _options(preset: str | None, options: dict) -> dict:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return {**DEFAULTS, **(PRESETS[preset] if preset else {}), **options}


def _channel_mult(o: dict) -> tuple:
    """``create_model``'s channel multipliers: given, or its default for the image size."""
    if o["channel_mult"] not in ("", None):
        cm = o["channel_mult"]
        return tuple(float(c) for c in (cm.split(",") if isinstance(cm, str) else cm))
    default = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
    if o["image_size"] not in default:
        raise ValueError(f"image_size {o['image_size']} has no default channel_mult; give channel_mult")
    return default[o["image_size"]]


def diffusers_config(o: dict) -> dict:
    """The ``UNet2DModel`` config equal to guided-diffusion's ``create_model(**o)``, or UnsupportedArchitecture."""
    mult = _channel_mult(o)
    if mult[0] != 1:
        raise UnsupportedArchitecture(
            f"channel_mult starts with {mult[0]:g}, not 1 (ADM 512): UNet2DModel's first width is also its time "
            "embedding width, so this model cannot be expressed exactly"
        )
    widths = [int(m * o["num_channels"]) for m in mult]
    attn = attention_levels(o, len(widths))
    if o["num_head_channels"] != -1:
        head_dim = int(o["num_head_channels"])
    else:
        heads_up = o["num_heads_upsample"] if o["num_heads_upsample"] != -1 else o["num_heads"]
        attn_widths = {w for w, a in zip(widths, attn) if a} | {widths[-1]}  # the middle block always attends
        if len(attn_widths) > 1 or heads_up != o["num_heads"]:
            raise UnsupportedArchitecture(
                f"a fixed head count ({o['num_heads']} heads) at attention widths {sorted(attn_widths)} (ADM 128): "
                "UNet2DModel has one head width for all levels, so this model cannot be expressed exactly"
            )
        head_dim = widths[-1] // int(o["num_heads"])
    if any(w % 32 for w in widths):
        raise UnsupportedArchitecture(f"widths {widths} are not multiples of 32 (ADM's GroupNorm32)")
    plain_down, plain_up = (
        ("ResnetDownsampleBlock2D", "ResnetUpsampleBlock2D") if o["resblock_updown"] else ("DownBlock2D", "UpBlock2D")
    )
    updown = "resnet" if o["resblock_updown"] else "conv"
    return dict(
        _class_name="UNet2DModel",
        sample_size=int(o["image_size"]),
        in_channels=3,
        out_channels=6 if o["learn_sigma"] else 3,
        block_out_channels=widths,
        layers_per_block=int(o["num_res_blocks"]),
        down_block_types=["AttnDownBlock2D" if a else plain_down for a in attn],
        up_block_types=["AttnUpBlock2D" if a else plain_up for a in reversed(attn)],
        downsample_type=updown,
        upsample_type=updown,
        downsample_padding=1,
        attention_head_dim=head_dim,
        norm_num_groups=32,
        attn_norm_num_groups=32,
        norm_eps=1e-5,
        act_fn="silu",
        flip_sin_to_cos=True,
        freq_shift=0,
        time_embedding_type="positional",
        center_input_sample=False,
        mid_block_scale_factor=1,
        resnet_time_scale_shift="scale_shift" if o["use_scale_shift_norm"] else "default",
        num_class_embeds=_NUM_CLASSES if o["class_cond"] else None,
        dropout=float(o["dropout"]),
    )


def scheduler_config(o: dict) -> dict:
    """The DDPM schedule of ``create_gaussian_diffusion``: learned_range with learn_sigma, else fixed_large."""
    steps = int(o["diffusion_steps"])
    if o["noise_schedule"] == "linear":  # get_named_beta_schedule: scaled so that 1000 steps give 1e-4 .. 0.02
        scale = 1000 / steps
        sched = dict(beta_schedule="linear", beta_start=scale * 0.0001, beta_end=scale * 0.02)
    elif o["noise_schedule"] == "cosine":
        sched = dict(beta_schedule="squaredcos_cap_v2")
    else:
        raise ValueError(f"unknown noise_schedule {o['noise_schedule']!r} (linear, cosine)")
    return dict(
        _class_name="DDPMScheduler",
        num_train_timesteps=steps,
        **sched,
        variance_type="learned_range" if o["learn_sigma"] else "fixed_large",
        clip_sample=True,
        prediction_type="epsilon",
    )


def _key_map(o: dict) -> tuple[dict[str, str], list[str]]:
    """ADM module prefixes -> diffusers prefixes, and the prefixes of attention blocks."""
    widths = diffusers_config(o)["block_out_channels"]
    attn = attention_levels(o, len(widths))
    nrb = int(o["num_res_blocks"])
    m = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "label_emb": "class_embedding",
        "input_blocks.0.0": "conv_in",
        "out.0": "conv_norm_out",
        "out.2": "conv_out",
    }
    m |= resnet_keys("middle_block.0", "mid_block.resnets.0") | resnet_keys("middle_block.2", "mid_block.resnets.1")
    attn_blocks = [("middle_block.1", "mid_block.attentions.0")]
    k = 1
    for level in range(len(widths)):
        for j in range(nrb):
            m |= resnet_keys(f"input_blocks.{k}.0", f"down_blocks.{level}.resnets.{j}")
            if attn[level]:
                attn_blocks.append((f"input_blocks.{k}.1", f"down_blocks.{level}.attentions.{j}"))
            k += 1
        if level != len(widths) - 1:
            if o["resblock_updown"]:
                m |= resnet_keys(f"input_blocks.{k}.0", f"down_blocks.{level}.downsamplers.0")
            else:
                m[f"input_blocks.{k}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            k += 1
    k = 0
    for i, level in enumerate(reversed(range(len(widths)))):
        for j in range(nrb + 1):
            m |= resnet_keys(f"output_blocks.{k}.0", f"up_blocks.{i}.resnets.{j}")
            if attn[level]:
                attn_blocks.append((f"output_blocks.{k}.1", f"up_blocks.{i}.attentions.{j}"))
            if level and j == nrb:
                last = f"output_blocks.{k}.{2 if attn[level] else 1}"
                if o["resblock_updown"]:
                    m |= resnet_keys(last, f"up_blocks.{i}.upsamplers.0")
                else:
                    m[f"{last}.conv"] = f"up_blocks.{i}.upsamplers.0.conv"
            k += 1
    return m, attn_blocks


def convert_state_dict(state: dict[str, torch.Tensor], o: dict) -> dict[str, torch.Tensor]:
    """Rename and reshape an ADM state dict into the ``UNet2DModel`` of :func:`diffusers_config` (``o``: full options).

    Raises ValueError when a tensor is left over or missing, so nothing is silently dropped."""
    config = diffusers_config(o)
    prefixes, attn_blocks = _key_map(o)
    out, used = rename_blocks(
        state, prefixes, attn_blocks, config["attention_head_dim"], legacy=not o["use_new_attention_order"]
    )
    left = sorted(set(state) - used)
    if left:
        raise ValueError(f"checkpoint does not match the given options: {len(left)} tensors unused, e.g. {left[:3]}")
    return out


def convert_adm(checkpoint: str | Path, out_dir: str | Path, *, preset: str | None = None, **options) -> Path:
    """Write a diffusers folder for a guided-diffusion checkpoint; return ``out_dir``.

    ``preset``: one of :data:`PRESETS` (default: the preset of a known file name, :data:`KNOWN_FILES`);
    ``options``: guided-diffusion's option names, overriding the preset. The folder is written atomically.
    """
    from diffusers import UNet2DModel

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    preset = preset_of(checkpoint, preset, options, KNOWN_FILES, "file name: give preset= or the model's options")
    o = _options(preset, options)
    config = diffusers_config(o)
    weights = convert_state_dict(read_checkpoint(checkpoint), o)
    with torch.device("meta"):
        unet = UNet2DModel(**{k: v for k, v in config.items() if k != "_class_name"})
    missing = sorted(set(unet.state_dict()) - set(weights))
    if missing:
        raise ValueError(
            f"checkpoint does not match the given options: {len(missing)} tensors missing, e.g. {missing[:3]}"
        )
    try:
        unet.load_state_dict(weights, strict=True, assign=True)  # every parameter filled, every tensor used
    except RuntimeError as e:  # shapes differ
        raise ValueError(f"checkpoint does not match the given options: {str(e).splitlines()[-1].strip()}") from None
    return write_folder(
        out_dir, unet, {"scheduler_config.json": scheduler_config(o), "adm_options.json": dict(o, preset=preset)}
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def check_conversion(checkpoint: str | Path, folder: str | Path) -> dict:
    """Check a written folder against its checkpoint, bit for bit: the folder's weights are exactly the checkpoint's
    tensors renamed and reshaped (:func:`convert_state_dict` with the folder's ``adm_options.json``), no tensor is
    missing or extra, and they hold as many values as the checkpoint. Returns what was checked (for the model
    card); raises ValueError on any difference."""
    from safetensors.torch import load_file

    checkpoint, folder = Path(checkpoint), Path(folder)
    o = json.loads((folder / "adm_options.json").read_text())
    o = {k: o[k] for k in DEFAULTS}
    state = read_checkpoint(checkpoint)
    want = convert_state_dict(state, o)
    got = load_file(folder / "diffusion_pytorch_model.safetensors")
    if set(got) != set(want):
        raise ValueError(f"the folder's tensors differ from the checkpoint's: {sorted(set(got) ^ set(want))[:3]}")
    unequal = [k for k in want if not (got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]))]
    if unequal:
        raise ValueError(f"{len(unequal)} tensors differ from the checkpoint's, e.g. {unequal[:3]}")
    values = sum(v.numel() for v in state.values())
    if values != sum(v.numel() for v in got.values()):
        raise ValueError("the folder holds a different number of values than the checkpoint")
    return dict(
        checkpoint=checkpoint.name,
        sha256=_sha256(checkpoint),
        tensors=len(got),
        source_tensors=len(state),
        values=values,
        dtypes=sorted({str(v.dtype).removeprefix("torch.") for v in got.values()}),
    )


def model_card(
    folder: str | Path, check: dict, *, licence: tuple[str, str, str] | None = None, repo_id: str | None = None
) -> str:
    """The Hub model card (README.md with Hugging Face metadata) of a converted folder: where the weights come from,
    their licence (``licence``: (name, Hub licence id, source); default: :data:`SOURCES` by file name), the
    conversion options and the check of :func:`check_conversion`."""
    folder = Path(folder)
    o = json.loads((folder / "adm_options.json").read_text())
    if licence is None:
        if check["checkpoint"] not in SOURCES:
            raise ValueError(
                f"{check['checkpoint']} is not a released checkpoint ({', '.join(SOURCES)}): give its "
                "licence and source (--license, --source)"
            )
        licence = SOURCES[check["checkpoint"]]
    name, licence_id, source = licence
    sched = json.loads((folder / "scheduler_config.json").read_text())
    options = {k: o[k] for k in DEFAULTS if o.get(k) != DEFAULTS[k]}
    flags = " ".join(f"--{k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items())
    preset = f"--preset {o['preset']}" if o.get("preset") else flags
    use = repo_id or "OWNER/NAME"
    meta = "\n".join(
        [
            "---",
            f"license: {licence_id}",
            "library_name: diffusers",
            "pipeline_tag: unconditional-image-generation",
            "tags:",
            "  - diffusers",
            "  - unconditional-image-generation",
            "  - guided-diffusion",
            "  - repaint",
            "  - inpainting",
            "---",
        ]
    )
    return f"""{meta}

# {check["checkpoint"]} as a diffusers `UNet2DModel`

An exact conversion of the guided-diffusion (ADM) checkpoint **{check["checkpoint"]}** into a diffusers folder
(`UNet2DModel` config, safetensors weights, `DDPMScheduler` config with `variance_type: {sched["variance_type"]}`),
made by `repaint.convert` of the RePaint Space project for RePaint inpainting (Lugmayr et al., CVPR 2022,
arXiv 2201.09865). It changes names and shapes only: no weight is retrained, rounded or cast.

## Source and licence

- Weights: {source}.
- Licence: **{name}**, as its source publishes it; this copy keeps it. Use it under the source's terms.
- Source file: `{check["checkpoint"]}`, SHA-256 `{check["sha256"]}`.

## Conversion

```
python -m repaint.convert {check["checkpoint"]} OUT {preset}
```

guided-diffusion options (those differing from its defaults): `{json.dumps(options)}`.
All options, as read by the converter: `adm_options.json` in this folder.

## Exactness check

- Done at conversion time (`repaint.convert.check_conversion`): the {check["tensors"]} tensors written here are,
  bit for bit, the checkpoint's {check["source_tensors"]} tensors renamed and reshaped ({check["values"]:,} values on
  both sides, dtype {", ".join(check["dtypes"])}); nothing is missing, left over or altered.
- The renaming itself is tested against OpenAI's `guided_diffusion` UNet (the project's `tests/test_adm.py`):
  with random weights, the converted model's outputs equal guided-diffusion's to 1e-5, at the released 256x256
  architecture too.

## Use

```python
import repaint
pipe = repaint.load("{use}")  # or, as a registry model's mirror: REPAINT_HUB_MIRROR_<NAME>={use}
```
"""


def push_to_hub(
    folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None, endpoint: str | None = None
) -> str:
    """Upload a converted folder (with its model card) to the Hub repository ``repo_id``, created if needed;
    returns the commit's URL. ``endpoint``: another Hub server (default: ``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=f"Upload {Path(folder).name} converted by repaint.convert",
    )
    return str(getattr(info, "commit_url", info))


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


def main(argv: list[str] | None = None) -> int:
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
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
