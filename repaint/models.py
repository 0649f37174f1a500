"""Model registry, loading (local folders and the Hugging Face Hub) and the inpainting object."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import images, masks
from .sampler import Callback, sample_repaint
from .schedule import count_model_calls, jump_schedule, noise_tables

__all__ = ["LIMITS", "MODELS", "Inpainter", "ModelInfo", "ModelLoadError", "load", "load_hub"]

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry: where the weights are and what they are for."""

    name: str
    repo_id: str | None  # Hugging Face Hub repository, or None for a model shipped in this package
    resolution: int
    description: str
    licence: str = "unknown"  # licence of the weights, as their source states it
    gpu_only: bool = True  # too slow on a CPU for an interactive page (the app offers it only with a GPU)


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("celebahq", "google/ddpm-ema-celebahq-256", 256, "Faces (CelebA-HQ), the paper's face model; GPU.",
                  "apache-2.0"),
        ModelInfo("church", "google/ddpm-ema-church-256", 256, "Churches (LSUN church outdoor); GPU.", "apache-2.0"),
        ModelInfo("bedroom", "google/ddpm-ema-bedroom-256", 256, "Bedrooms (LSUN bedroom); GPU.", "apache-2.0"),
        ModelInfo("cat", "google/ddpm-ema-cat-256", 256, "Cats (LSUN cat); GPU.", "apache-2.0"),
        ModelInfo("cifar10", "google/ddpm-cifar10-32", 32, "Small objects (CIFAR-10), 32x32; runs on a CPU.",
                  "apache-2.0", gpu_only=False),
        ModelInfo("bundled", None, 32, "This project's cartoon-face model, 32x32, offline; seconds on a CPU.", "MIT",
                  gpu_only=False),
    )
}

#: Bounds on the API's settings (inclusive). ``steps`` is further bounded by the model's training steps.
LIMITS = {"steps": (1, 1000), "jump_length": (1, 1000), "jump_n_sample": (1, 20), "num_samples": (1, 16),
          "seed": (0, 2**63 - 1)}


class ModelLoadError(RuntimeError):
    """A model could not be found or read; the message names the model and the reason."""


def _check_int(name: str, value) -> int:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def _model_folders(root: Path) -> tuple[Path, Path]:
    """(unet folder, scheduler folder) of a root layout or a pipeline layout (model_index.json)."""
    if (root / "model_index.json").is_file():
        return root / "unet", root / "scheduler"
    return root, root


def _read_folder(root: Path, name: str) -> tuple[torch.nn.Module, dict]:
    from diffusers import UNet2DModel

    unet_dir, sched_dir = _model_folders(root)
    config_file = unet_dir / "config.json"
    sched_file = sched_dir / "scheduler_config.json"
    for f in (config_file, sched_file):
        if not f.is_file():
            raise ModelLoadError(f"model {name!r}: {f.relative_to(root)} is missing")
    has_st = (unet_dir / "diffusion_pytorch_model.safetensors").is_file()
    if not has_st and not (unet_dir / "diffusion_pytorch_model.bin").is_file():
        raise ModelLoadError(f"model {name!r}: no diffusion_pytorch_model.safetensors (or .bin) found")
    try:
        config = json.loads(config_file.read_text())
        if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
            raise ModelLoadError(f"model {name!r} is a {config['_class_name']}, not a UNet2DModel")
        # diffusers reads safetensors, or a .bin with torch.load(weights_only=True): no code is executed.
        unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=has_st, low_cpu_mem_usage=False)
        sched = json.loads(sched_file.read_text())
    except ModelLoadError:
        raise
    except Exception as e:  # corrupt weights, wrong shapes, bad json
        log.debug("model %r: reading %s failed", name, root, exc_info=True)  # paths stay in the log, not the message
        raise ModelLoadError(f"model {name!r}: cannot read its weights or config ({type(e).__name__})") from None
    if sched.get("prediction_type", "epsilon") != "epsilon":
        raise ModelLoadError(f"model {name!r} predicts {sched['prediction_type']!r}; RePaint here needs epsilon")
    return unet, sched


def _download(repo_id: str, name: str, cache_dir=None) -> Path:
    """The local snapshot of a Hub repository (the cache when offline), weights as safetensors if present."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "unet/*.safetensors", "scheduler/*.json"]
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir))
        unet_dir, _ = _model_folders(path)
        if not (unet_dir / "diffusion_pytorch_model.safetensors").is_file():
            path = Path(snapshot_download(repo_id, allow_patterns=patterns + ["*.bin"], cache_dir=cache_dir))
    except Exception as e:
        raise ModelLoadError(
            f"model {name!r} ({repo_id}) is not in the local cache and the Hub could not be reached "
            f"({type(e).__name__}); connect to the internet once, or use the offline model 'bundled'"
        ) from None
    return path


def load(name_or_path: str | Path = "bundled", device=None, dtype=None, cache_dir=None) -> Inpainter:
    """Load an epsilon-predicting diffusers ``UNet2DModel`` and its DDPM scheduler config.

    ``name_or_path``: a registry name (:data:`MODELS`), a local folder, or a Hub repository id
    (``owner/name``; with ``HF_HUB_OFFLINE=1`` only the cache is read). Folders hold either the
    root layout (config.json, weights, scheduler_config.json) or a pipeline layout (model_index.json,
    unet/, scheduler/). Remote code is never run; weights are safetensors or weights-only pickles.
    """
    key = str(name_or_path)
    info = MODELS.get(key)
    if info is not None and info.repo_id is None:
        root = BUNDLED_DIR
    elif info is not None:
        root = _download(info.repo_id, key, cache_dir)
    elif Path(key).is_dir():
        root = Path(key)
    elif key.count("/") == 1 and not Path(key).exists():
        return load_hub(key, device, dtype, cache_dir)
    else:
        raise ModelLoadError(f"unknown model {key!r}: not a registry name ({', '.join(MODELS)}), folder or Hub id")
    return _from_folder(root, key, device, dtype)


def load_hub(repo_id: str, device=None, dtype=None, cache_dir=None) -> Inpainter:
    """Load from the Hugging Face Hub only (or its cache): ``repo_id`` is never read as a local path."""
    return _from_folder(_download(repo_id, repo_id, cache_dir), repo_id, device, dtype)


def _from_folder(root: Path, key: str, device, dtype) -> Inpainter:
    unet, sched = _read_folder(root, key)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    unet = unet.to(device).eval().requires_grad_(False)
    if dtype is not None and dtype != unet.dtype:
        unet = unet.to(dtype=dtype)
    return Inpainter(unet, sched, key)


class Inpainter:
    """A loaded model: ``inpaint`` fills a masked image, ``compare`` also gives the n = 1 result."""

    def __init__(self, unet: torch.nn.Module, scheduler_config: dict, name: str = "model"):
        self.unet = unet
        self.scheduler_config = dict(scheduler_config)
        self.name = name
        self.resolution = int(unet.config.sample_size)
        self.channels = int(unet.config.in_channels)
        self.train_steps = int(self.scheduler_config.get("num_train_timesteps", 1000))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's noise prediction in float32 (a learned-variance half of the output is ignored)."""
        out = self.unet(x.to(self.dtype), t).sample
        return out[:, : self.channels].float()

    def prepare(self, image, mask, *, keep_mask: bool = False, invert: bool = False, seed: int = 0):
        """Fit an image and its mask to the model: (uint8 (R, R, 3), bool (R, R)), True = fill.

        ``mask``: a preset name (:data:`repaint.masks.PRESETS`, made at the model's resolution), or a mask
        image / array of the image's size (white or opaque = fill; ``keep_mask=True`` for white = keep). A preset
        always names the region to fill: ``keep_mask`` does not apply to it, ``invert`` does.
        """
        img = images.open_image(image)
        rgb = images.fit_image(img, self.resolution)
        if mask is None:
            raise ValueError("no mask given: draw the region to fill or pick a preset")
        if isinstance(mask, str) and (mask in masks.PRESETS or not Path(mask).is_file()):
            m = masks.preset(mask, self.resolution, self.resolution, seed) ^ invert  # keep_mask: mask files only
        else:
            if not isinstance(mask, (Image.Image, np.ndarray)):
                mask = images.open_image(mask)
            region = masks.load_mask(mask, keep=keep_mask, invert=invert)
            m = images.fit_mask(region, images.upright_size(img), self.resolution)
        return rgb, m

    def model_calls(self, steps: int = 250, jump_length: int = 10, jump_n_sample: int = 10) -> int:
        """Batched model calls of one run (a compare run makes the same number, with a larger batch)."""
        return count_model_calls(steps, jump_length, jump_n_sample)

    def check_settings(self, steps, jump_length, jump_n_sample, seed, num_samples) -> tuple[int, int, int, int, int]:
        """Validated (steps, jump_length, jump_n_sample, seed, num_samples), or a ValueError naming the setting."""
        steps = _check_int("steps", steps)
        if steps > self.train_steps:
            raise ValueError(f"steps must be between 1 and {self.train_steps} for this model, got {steps}")
        jump_length = _check_int("jump_length", jump_length)
        if jump_length > steps:
            raise ValueError(f"jump_length must be at most steps ({steps}), got {jump_length}")
        return steps, jump_length, _check_int("jump_n_sample", jump_n_sample), _check_int("seed", seed), \
            _check_int("num_samples", num_samples)

    @torch.inference_mode()
    def sample(self, images_u8: np.ndarray, fill: np.ndarray, schedules: list[list[int]], seeds: list[int],
               callback: Callback | None = None, paste: bool = True) -> np.ndarray:
        """The batched core: uint8 (B, R, R, 3) fitted images and bool (B, R, R) masks (or one of each, shared),
        one schedule and one seed per sample -> uint8 (B, R, R, 3), known pixels exact.

        The sampler returns the known pixels exactly by itself; ``paste`` copies them from the input once more as a
        guarantee. ``paste=False`` returns the sampler's own pixels, to measure that claim."""
        dev = self.device
        steps = schedules[0][0] + 1
        gens = [torch.Generator(dev).manual_seed(s) for s in seeds]
        shape = (self.channels, self.resolution, self.resolution)
        x = torch.stack([torch.randn(shape, generator=g, device=dev) for g in gens])  # x_T, Algorithm 1 line 1
        images_u8, fill = np.asarray(images_u8), np.asarray(fill, dtype=bool)
        image = images.to_tensor(images_u8, dev)
        m = torch.from_numpy(fill).to(dev).reshape(-1, 1, *fill.shape[-2:])
        out = sample_repaint(self.eps, x, image, m, noise_tables(self.scheduler_config, steps), schedules, gens,
                             callback)
        result = images.from_tensor(out)
        if not paste:
            return result
        keep = np.broadcast_to(~fill, result.shape[:3])
        result[keep] = np.broadcast_to(images_u8, result.shape)[keep]  # exact already (abar = 1 at the end)
        return result

    def _samples(self, image, mask, steps, jump_length, ns, seed, num_samples, callback, keep_mask, invert):
        steps, jump_length, _, seed, num_samples = self.check_settings(steps, jump_length, max(ns), seed, num_samples)
        rgb, m = self.prepare(image, mask, keep_mask=keep_mask, invert=invert, seed=seed)
        if not m.any():
            log.info("empty mask: nothing to fill, returning the input")
            return [[Image.fromarray(rgb) for _ in range(num_samples)] for _ in ns]
        if m.all():
            log.info("full mask: nothing is known, this is unconditional generation")
        schedules = [jump_schedule(steps, jump_length, n) for n in ns for _ in range(num_samples)]
        seeds = [seed + i for _ in ns for i in range(num_samples)]
        out = self.sample(rgb, m, schedules, seeds, callback)
        return [[Image.fromarray(a) for a in out[k * num_samples : (k + 1) * num_samples]] for k in range(len(ns))]

    def inpaint(self, image, mask, *, steps: int = 250, jump_length: int = 10, jump_n_sample: int = 10,
                seed: int = 0, num_samples: int = 1, callback: Callback | None = None, keep_mask: bool = False,
                invert: bool = False) -> list[Image.Image]:
        """Fill the masked region (True / white = fill) with RePaint; sample ``i`` uses seed ``seed + i``.

        Returns ``num_samples`` RGB images at the model's resolution; known pixels equal the fitted input exactly.
        """
        return self._samples(image, mask, steps, jump_length, [jump_n_sample], seed, num_samples, callback,
                             keep_mask, invert)[0]

    def compare(self, image, mask, *, steps: int = 250, jump_length: int = 10, jump_n_sample: int = 10,
                seed: int = 0, num_samples: int = 1, callback: Callback | None = None, keep_mask: bool = False,
                invert: bool = False) -> tuple[list[Image.Image], list[Image.Image]]:
        """``inpaint`` with ``jump_n_sample`` and with 1 from the same seeds, run together in one batch.

        Returns ``(resampled, plain)``: the same images as the two ``inpaint`` calls.
        """
        resampled, plain = self._samples(image, mask, steps, jump_length, [jump_n_sample, 1], seed, num_samples,
                                         callback, keep_mask, invert)
        return resampled, plain
