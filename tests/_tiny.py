"""Tiny random diffusers models for fast tests (weights do not matter for the checks that use them)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from repaint.models import Inpainter


def tiny_unet(size: int = 16, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


def tiny_scheduler(**kw) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", **kw)


def tiny_pipe(size: int = 16) -> Inpainter:
    return Inpainter(tiny_unet(size).requires_grad_(False), dict(tiny_scheduler().config), "tiny")


def save_root_layout(path: Path, size: int = 16, safe: bool = True) -> Path:
    """config.json + weights + scheduler_config.json at the root, as the google/ddpm-* repos have."""
    tiny_unet(size).save_pretrained(path, safe_serialization=safe)
    tiny_scheduler().save_pretrained(path)
    return path


def save_pipeline_layout(path: Path, size: int = 16) -> Path:
    """model_index.json + unet/ + scheduler/, as DDPMPipeline.save_pretrained writes."""
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=tiny_unet(size), scheduler=tiny_scheduler()).save_pretrained(path)
    return path


def assert_same_run(got, alone) -> None:
    """Two images of one run (a batch's sample and a run alone with its seed), up to the batch-size rounding the
    README allows: a row's float output can move by a few 1e-6 when the batch (or torch's split of it between
    threads) changes, so a filled pixel may round one uint8 level apart; a pixel in 100 at most, here."""
    import numpy as np

    d = np.abs(np.asarray(got).astype(int) - np.asarray(alone))
    assert d.max() <= 1 and (d > 0).mean() < 0.01, f"{(d > 0).sum()} pixels differ, by up to {d.max()} levels"
