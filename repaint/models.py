"""The model registry, loading and the inpainting object under one name (``repaint.models``), as before they had a
module each: :mod:`repaint.registry`, :mod:`repaint.loading`, :mod:`repaint.pipeline`, :mod:`repaint.settings`."""

from .loading import ModelLoadError, default_dtype, load, load_hub, scheduler_config
from .pipeline import Inpainter
from .registry import BUNDLED_DIR, CLASSIFIERS, MIRROR_ENV, MODELS, ModelInfo, hub_mirror
from .settings import LIMITS, Settings

__all__ = [
    "BUNDLED_DIR",
    "CLASSIFIERS",
    "LIMITS",
    "MIRROR_ENV",
    "MODELS",
    "Inpainter",
    "ModelInfo",
    "ModelLoadError",
    "Settings",
    "default_dtype",
    "hub_mirror",
    "load",
    "load_hub",
    "scheduler_config",
]
