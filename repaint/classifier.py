"""The noisy-image classifier of classifier guidance (Dhariwal & Nichol 2021, section 4), as diffusers blocks.

guided-diffusion's classifier (``script_util.create_classifier``) is the encoder half of an ADM UNet followed by an
attention-pool head. The encoder computes exactly what a converted UNet's down and middle blocks compute
(:mod:`repaint.convert`), so it is built from the same diffusers blocks (``get_down_block``, ``UNetMidBlock2D``,
``Timesteps``, ``TimestepEmbedding``); only the head, CLIP's attention pooling, is written here.

    python -m repaint.convert 256x256_classifier.pt models/classifier     # a known file name: its preset

Options use guided-diffusion's names (``script_util.classifier_defaults()``); checkpoints are read with
``torch.load(weights_only=True)`` only; the output folder holds ``config.json`` and safetensors weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block
from torch import nn

from . import checkpoints

__all__ = [
    "CHANNEL_MULT",
    "CLASSIFIER_DEFAULTS",
    "CLASSIFIER_FILES",
    "CLASSIFIER_PRESETS",
    "AttentionPool",
    "NoisyClassifier",
    "classifier_config",
    "convert_classifier",
    "convert_classifier_state_dict",
    "is_classifier_state",
]

#: guided-diffusion's ``classifier_defaults()`` (without ``classifier_use_fp16``: a run-time dtype, not weights).
CLASSIFIER_DEFAULTS = dict(
    image_size=64,
    classifier_width=128,
    classifier_depth=2,
    classifier_attention_resolutions="32,16,8",
    classifier_use_scale_shift_norm=True,
    classifier_resblock_updown=True,
    classifier_pool="attention",
)

#: The released classifiers' options (guided-diffusion's README; RePaint's confs/test_inet256_*.yml for 256).
CLASSIFIER_PRESETS: dict[str, dict] = {
    "imagenet64_classifier": dict(image_size=64, classifier_depth=4),
    "imagenet128_classifier": dict(image_size=128),
    "imagenet256_classifier": dict(image_size=256),
    "imagenet512_classifier": dict(image_size=512),
}
CLASSIFIER_FILES = {
    "64x64_classifier.pt": "imagenet64_classifier",
    "128x128_classifier.pt": "imagenet128_classifier",
    "256x256_classifier.pt": "imagenet256_classifier",
    "512x512_classifier.pt": "imagenet512_classifier",
}

#: create_classifier's channel multipliers per image size, its head width and class count.
CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
_HEAD_CHANNELS = 64
_NUM_CLASSES = 1000


class AttentionPool(nn.Module):
    """CLIP's attention pooling (Radford et al. 2021), as guided-diffusion's ``AttentionPool2d`` computes it.

    The (B, C, H, W) features become H*W tokens with their mean prepended, plus a learned positional embedding; one
    multi-head attention query, the mean token's, reads all tokens, and a linear map turns it into the output.
    Only the mean token's query is computed: the other tokens' outputs are never used."""

    def __init__(self, tokens: int, width: int, head_dim: int, out_dim: int):
        super().__init__()
        self.heads = width // head_dim
        self.positional_embedding = nn.Parameter(torch.zeros(tokens + 1, width))
        self.to_q, self.to_k, self.to_v = (nn.Linear(width, width) for _ in range(3))
        self.proj = nn.Linear(width, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        split = lambda y: y.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731  (B, heads, L, d)
        out = F.scaled_dot_product_attention(split(self.to_q(x[:, :1])), split(self.to_k(x)), split(self.to_v(x)))
        return self.proj(out.transpose(1, 2).flatten(2))[:, 0]


class NoisyClassifier(ModelMixin, ConfigMixin):
    """``classifier(x_t, timesteps) -> logits (B, num_classes)``: guided-diffusion's ``EncoderUNetModel`` with
    ``pool="attention"``, on training timesteps (0 .. 999), for noised images in [-1, 1]."""

    @register_to_config
    def __init__(
        self,
        sample_size: int = 64,
        in_channels: int = 3,
        time_channels: int = 128,
        block_out_channels: tuple[int, ...] = (128, 256, 384, 512),
        layers_per_block: int = 2,
        down_block_types: tuple[str, ...] = ("DownBlock2D",) * 4,
        downsample_type: str = "resnet",
        attention_head_dim: int = 64,
        resnet_time_scale_shift: str = "scale_shift",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        num_classes: int = _NUM_CLASSES,
    ):
        super().__init__()
        temb = 4 * time_channels
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(time_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_channels, temb)
        common = dict(
            temb_channels=temb,
            resnet_eps=norm_eps,
            resnet_act_fn="silu",
            resnet_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
            resnet_time_scale_shift=resnet_time_scale_shift,
        )
        widths = [block_out_channels[0], *block_out_channels]
        self.down_blocks = nn.ModuleList(
            get_down_block(
                kind,
                num_layers=layers_per_block,
                in_channels=widths[i],
                out_channels=widths[i + 1],
                add_downsample=i < len(down_block_types) - 1,
                downsample_padding=1,
                downsample_type=downsample_type,
                dropout=0.0,
                **common,
            )
            for i, kind in enumerate(down_block_types)
        )
        self.mid_block = UNetMidBlock2D(
            in_channels=widths[-1], dropout=0.0, output_scale_factor=1, attn_groups=norm_num_groups, **common
        )
        self.norm_out = nn.GroupNorm(norm_num_groups, widths[-1], eps=norm_eps)
        side = sample_size // 2 ** (len(down_block_types) - 1)
        self.pool = AttentionPool(side * side, widths[-1], attention_head_dim, num_classes)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=sample.device).expand(len(sample))
        emb = self.time_embedding(self.time_proj(timesteps).to(self.dtype))
        h = self.conv_in(sample.to(self.dtype))
        for block in self.down_blocks:
            h, _ = block(hidden_states=h, temb=emb)
        h = self.mid_block(h, emb)
        return self.pool(F.silu(self.norm_out(h))).float()


# --- options and conversion -----------------------------------------------------------------------------------------


def classifier_options(preset: str | None, options: dict) -> dict:
    unknown = set(options) - set(CLASSIFIER_DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown classifier option(s) {', '.join(sorted(unknown))}; known: {', '.join(CLASSIFIER_DEFAULTS)}"
        )
    if preset is not None and preset not in CLASSIFIER_PRESETS:
        raise ValueError(f"unknown classifier preset {preset!r}; known: {', '.join(CLASSIFIER_PRESETS)}")
    return {**CLASSIFIER_DEFAULTS, **(CLASSIFIER_PRESETS[preset] if preset else {}), **options}


def classifier_config(o: dict) -> dict:
    """The :class:`NoisyClassifier` config equal to guided-diffusion's ``create_classifier(**o)``."""
    if o["classifier_pool"] != "attention":
        raise checkpoints.UnsupportedArchitecture(
            f"classifier_pool {o['classifier_pool']!r}: only 'attention' (the released classifiers') is supported"
        )
    size = int(o["image_size"])
    if size not in CHANNEL_MULT:
        raise ValueError(f"image_size {size}: create_classifier knows {', '.join(map(str, CHANNEL_MULT))}")
    res = o["classifier_attention_resolutions"]
    levels = checkpoints.attention_levels(dict(image_size=size, attention_resolutions=res), len(CHANNEL_MULT[size]))
    return encoder_config(
        size,
        int(o["classifier_width"]),
        CHANNEL_MULT[size],
        int(o["classifier_depth"]),
        levels,
        _HEAD_CHANNELS,
        bool(o["classifier_use_scale_shift_norm"]),
        bool(o["classifier_resblock_updown"]),
    )


def encoder_config(
    size: int,
    width: int,
    channel_mult,
    depth: int,
    attention: list[bool],
    head_dim: int,
    scale_shift: bool,
    resblock_updown: bool,
    num_classes: int = _NUM_CLASSES,
) -> dict:
    """The :class:`NoisyClassifier` config of an ``EncoderUNetModel(pool="attention")`` with these arguments
    (``attention``: which levels attend; the middle block always does)."""
    widths = [int(m * width) for m in channel_mult]
    if any(w % 32 for w in widths):
        raise checkpoints.UnsupportedArchitecture(f"widths {widths} are not multiples of 32 (ADM's GroupNorm32)")
    plain = "ResnetDownsampleBlock2D" if resblock_updown else "DownBlock2D"
    return dict(
        _class_name="NoisyClassifier",
        sample_size=size,
        in_channels=3,
        time_channels=width,
        block_out_channels=widths,
        layers_per_block=depth,
        down_block_types=["AttnDownBlock2D" if a else plain for a in attention],
        downsample_type="resnet" if resblock_updown else "conv",
        attention_head_dim=head_dim,
        resnet_time_scale_shift="scale_shift" if scale_shift else "default",
        norm_num_groups=32,
        norm_eps=1e-5,
        num_classes=num_classes,
    )


def _key_map(config: dict) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """EncoderUNetModel module prefixes -> ours, and the (theirs, ours) attention blocks of the torso."""
    m = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "input_blocks.0.0": "conv_in",
        "out.0": "norm_out",
    }
    m |= checkpoints.resnet_keys("middle_block.0", "mid_block.resnets.0") | checkpoints.resnet_keys(
        "middle_block.2", "mid_block.resnets.1"
    )
    attn = [("middle_block.1", "mid_block.attentions.0")]
    k, kinds = 1, config["down_block_types"]
    for level, kind in enumerate(kinds):
        for j in range(config["layers_per_block"]):
            m |= checkpoints.resnet_keys(f"input_blocks.{k}.0", f"down_blocks.{level}.resnets.{j}")
            if kind.startswith("Attn"):
                attn.append((f"input_blocks.{k}.1", f"down_blocks.{level}.attentions.{j}"))
            k += 1
        if level != len(kinds) - 1:
            if config["downsample_type"] == "resnet":
                m |= checkpoints.resnet_keys(f"input_blocks.{k}.0", f"down_blocks.{level}.downsamplers.0")
            else:
                m[f"input_blocks.{k}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            k += 1
    return m, attn


def convert_classifier_state_dict(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Rename and reshape an ``EncoderUNetModel`` state dict into the :class:`NoisyClassifier` of ``config``.

    The torso's attention is in guided-diffusion's legacy qkv order (as ``create_classifier`` builds it), the
    pool's in the new order (``QKVAttention``). Raises ValueError when a tensor is left over or missing."""
    prefixes, attn = _key_map(config)
    out, used = checkpoints.rename_blocks(state, prefixes, attn, config["attention_head_dim"], legacy=True)
    pool = {f"out.2.{p}.{leaf}" for p in ("qkv_proj", "c_proj") for leaf in ("weight", "bias")}
    pool.add("out.2.positional_embedding")
    missing = sorted(pool - set(state))
    if missing:
        raise ValueError(f"checkpoint does not match the given options: no attention pool ({missing[0]} missing)")
    width = state["out.2.positional_embedding"].shape[0]
    heads = width // config["attention_head_dim"]
    out["pool.positional_embedding"] = state["out.2.positional_embedding"].T.contiguous()
    for leaf in ("weight", "bias"):
        qkv = state[f"out.2.qkv_proj.{leaf}"]
        qkv = qkv[..., 0] if leaf == "weight" else qkv  # Conv1d (3C, C, 1) -> Linear (3C, C)
        for name, part in zip(("to_q", "to_k", "to_v"), checkpoints.split_qkv(qkv, heads, legacy=False)):
            out[f"pool.{name}.{leaf}"] = part
        proj = state[f"out.2.c_proj.{leaf}"]
        out[f"pool.proj.{leaf}"] = proj[..., 0] if leaf == "weight" else proj
    used |= pool
    left = sorted(set(state) - used)
    if left:
        raise ValueError(f"checkpoint does not match the given options: {len(left)} tensors unused, e.g. {left[:3]}")
    return out


def is_classifier_state(keys) -> bool:
    """Whether a guided-diffusion state dict's keys are a classifier's (its attention pool), not a UNet's."""
    return "out.2.positional_embedding" in set(keys)


def build(config: dict, weights: dict[str, torch.Tensor] | None = None) -> NoisyClassifier:
    """The classifier of ``config``; with ``weights``, every parameter filled from them (strict), else on 'meta'."""
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    if weights is None:
        return NoisyClassifier(**kwargs)
    with torch.device("meta"):
        model = NoisyClassifier(**kwargs)
    missing = sorted(set(model.state_dict()) - set(weights))
    if missing:
        raise ValueError(
            f"checkpoint does not match the given options: {len(missing)} tensors missing, e.g. {missing[:3]}"
        )
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as e:  # shapes differ
        raise ValueError(f"checkpoint does not match the given options: {str(e).splitlines()[-1].strip()}") from None
    return model


def convert_classifier(checkpoint: str | Path, out_dir: str | Path, *, preset: str | None = None, **options) -> Path:
    """Write a folder (``config.json``, safetensors weights) for a guided-diffusion classifier; return ``out_dir``.

    ``preset``: one of :data:`CLASSIFIER_PRESETS` (default: a known file name's, :data:`CLASSIFIER_FILES`);
    ``options``: ``classifier_defaults()``'s names (``image_size``, ``classifier_width``, ``classifier_depth``,
    ``classifier_attention_resolutions``, ``classifier_use_scale_shift_norm``, ``classifier_resblock_updown``,
    ``classifier_pool``), over the preset and guided-diffusion's defaults. Written atomically."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    preset = checkpoints.preset_of(
        checkpoint, preset, options, CLASSIFIER_FILES, "classifier file name: give preset= or its options"
    )
    o = classifier_options(preset, options)
    config = classifier_config(o)
    model = build(config, convert_classifier_state_dict(checkpoints.read_checkpoint(checkpoint), config))
    return checkpoints.write_folder(out_dir, model, {"adm_options.json": dict(o, preset=preset)})


def read_classifier(folder: Path, dtype: torch.dtype | None = None) -> NoisyClassifier:
    """The classifier saved by :func:`convert_classifier` (safetensors only)."""
    config = json.loads((folder / "config.json").read_text())
    if config.get("_class_name") != "NoisyClassifier":
        raise ValueError(f"{folder.name} holds a {config.get('_class_name')}, not a NoisyClassifier")
    return checkpoints.from_pretrained_whole(NoisyClassifier, folder, use_safetensors=True, torch_dtype=dtype)
