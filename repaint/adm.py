"""guided-diffusion ("ADM", Dhariwal & Nichol 2021) checkpoints as diffusers folders, exactly: the architectures'
options, their diffusers configs and the renaming of their tensors (the command line: :mod:`repaint.convert`)."""

from __future__ import annotations

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

__all__ = [
    "DEFAULTS",
    "KNOWN_FILES",
    "PRESETS",
    "SOURCES",
    "UnsupportedArchitecture",
    "convert_adm",
    "convert_state_dict",
    "diffusers_config",
    "adm_options",
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


def adm_options(preset: str | None, options: dict) -> dict:
    """guided-diffusion's options of a preset (or its defaults), updated by ``options``; unknown names are refused."""
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
    o = adm_options(preset, options)
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
