"""Tiny random guided-diffusion (ADM) models, built with OpenAI's own ``guided_diffusion`` code (the oracle)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from repaint import convert

with warnings.catch_warnings():  # guided_diffusion's torch.cuda.amp decorators warn on import
    warnings.simplefilter("ignore", FutureWarning)
    from guided_diffusion import gaussian_diffusion, respace, script_util

__all__ = ["TINY", "gaussian_diffusion", "randomise", "respace", "script_util", "tiny_adm", "tiny_options"]

#: A tiny ADM: 16x16, widths 32/64/64, attention at 8x8 only (so plain and attention blocks both occur),
#: two 16-channel heads per attention block (multi-head, where the legacy qkv layout matters).
TINY = dict(
    image_size=16,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2,2",
    attention_resolutions="8",
    num_head_channels=16,
    learn_sigma=True,
    resblock_updown=True,
    use_scale_shift_norm=True,
)

_MODEL_KEYS = (
    "image_size",
    "num_channels",
    "num_res_blocks",
    "channel_mult",
    "learn_sigma",
    "class_cond",
    "attention_resolutions",
    "num_heads",
    "num_head_channels",
    "num_heads_upsample",
    "use_scale_shift_norm",
    "dropout",
    "resblock_updown",
    "use_new_attention_order",
)


def tiny_options(**over) -> dict:
    return {**convert.DEFAULTS, **TINY, **over}


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random, the zero-initialised output layers included: norms' scales near 1, weights with
    variance 1 / fan-in, biases and embeddings small."""
    g = torch.Generator().manual_seed(seed)
    norm_scales = ("norm.weight", "in_layers.0.weight", "out_layers.0.weight", "out.0.weight")
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if name.endswith(norm_scales):
            p.data = 1 + 0.1 * noise
        elif p.ndim == 1:
            p.data = 0.1 * noise
        else:
            p.data = noise * p[0].numel() ** -0.5
    return model


def tiny_adm(seed: int = 0, **over) -> tuple[torch.nn.Module, dict]:
    """(guided_diffusion UNetModel with random weights in eval mode, its full options)."""
    o = tiny_options(**over)
    return randomise(script_util.create_model(**{k: o[k] for k in _MODEL_KEYS}), seed).eval(), o


def save_checkpoint(path: Path, seed: int = 0, **over) -> tuple[Path, torch.nn.Module, dict]:
    model, o = tiny_adm(seed, **over)
    torch.save(model.state_dict(), path)
    return path, model, o


def tiny_classifier(
    seed: int = 0,
    size: int = 16,
    width: int = 32,
    channel_mult=(1, 2, 2),
    depth: int = 1,
    attention_ds=(4,),
    head_channels: int = 16,
    scale_shift: bool = True,
    resblock_updown: bool = True,
) -> torch.nn.Module:
    """guided_diffusion's EncoderUNetModel with the attention pool (create_classifier's head) and random weights,
    every layer included (the zero-initialised ones too), in eval mode."""
    from guided_diffusion.unet import EncoderUNetModel

    model = EncoderUNetModel(
        image_size=size,
        in_channels=3,
        model_channels=width,
        out_channels=1000,
        num_res_blocks=depth,
        attention_resolutions=tuple(attention_ds),
        channel_mult=channel_mult,
        num_head_channels=head_channels,
        use_scale_shift_norm=scale_shift,
        resblock_updown=resblock_updown,
        pool="attention",
    )
    return randomise(model, seed).eval()


def classifier_folder(tmp, model):
    """``model`` (tiny_args' architecture, 64-channel heads) saved as a checkpoint and converted by its options."""
    torch.save(model.state_dict(), tmp / "cls.pt")
    o = dict(image_size=16, classifier_width=32, classifier_depth=1, classifier_attention_resolutions="4")
    import pytest

    import repaint
    from repaint import classifier as _classifier

    with pytest.MonkeyPatch.context() as mp:  # create_classifier has no 16x16 size: tiny_args' multipliers
        mp.setitem(_classifier.CHANNEL_MULT, 16, (1, 2, 2))
        return repaint.convert_classifier(tmp / "cls.pt", tmp / "cls", **o)
