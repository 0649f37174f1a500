"""RePaint: inpainting with an unconditional DDPM (Lugmayr et al., CVPR 2022, arXiv 2201.09865)."""

from . import masks
from .loading import ModelLoadError, load, load_hub
from .pipeline import Inpainter
from .registry import CLASSIFIERS, MODELS, ModelInfo
from .sampler import classifier_grad, ddpm_step, forward_step, learned_sigma, q_sample, sample_repaint
from .schedule import count_model_calls, jump_schedule, noise_tables, space_timesteps
from .settings import LIMITS, Settings

__all__ = [
    "CLASSIFIERS",
    "LIMITS",
    "MODELS",
    "Inpainter",
    "ModelInfo",
    "ModelLoadError",
    "Settings",
    "classifier_grad",
    "convert_adm",
    "convert_classifier",
    "count_model_calls",
    "ddpm_step",
    "forward_step",
    "jump_schedule",
    "learned_sigma",
    "load",
    "load_hub",
    "masks",
    "noise_tables",
    "q_sample",
    "sample_repaint",
    "space_timesteps",
]
__version__ = "0.1.0"


def __getattr__(name):  # repaint.convert_adm, imported on first use so that `python -m repaint.convert` runs cleanly
    if name == "convert_adm":
        from .adm import convert_adm

        return convert_adm
    if name == "convert_classifier":
        from .classifier import convert_classifier

        return convert_classifier
    raise AttributeError(f"module 'repaint' has no attribute {name!r}")
