"""RePaint: inpainting with an unconditional DDPM (Lugmayr et al., CVPR 2022, arXiv 2201.09865)."""

from . import masks
from .convert import convert_adm
from .models import LIMITS, MODELS, Inpainter, ModelInfo, ModelLoadError, load, load_hub
from .sampler import ddpm_step, forward_step, q_sample, sample_repaint
from .schedule import count_model_calls, jump_schedule, noise_tables, space_timesteps

__all__ = [
    "LIMITS", "MODELS", "Inpainter", "ModelInfo", "ModelLoadError", "convert_adm", "count_model_calls", "ddpm_step",
    "forward_step",
    "jump_schedule", "load", "load_hub", "masks", "noise_tables", "q_sample", "sample_repaint", "space_timesteps",
]
__version__ = "0.1.0"
