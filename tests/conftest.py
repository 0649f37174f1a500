"""Test set-up for app.py: a tiny random stand-in for the bundled model while its
trained weights are absent (repaint/bundled/ empty); with the real weights present nothing is replaced."""

import os
import tempfile
from pathlib import Path

import repaint.models

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _tiny_model(path: Path) -> Path:
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    UNet2DModel(sample_size=32, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(path)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(path)
    return path


def pytest_configure(config):
    os.environ.setdefault("REPAINT_MODEL", "bundled")
    if not (repaint.models.BUNDLED_DIR / WEIGHTS).is_file():
        repaint.models.BUNDLED_DIR = _tiny_model(Path(tempfile.mkdtemp(prefix="repaint_tiny_")))
