"""Model registry, loading (local folders and the Hugging Face Hub) and the inpainting object."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import images, masks, window
from .sampler import Callback, classifier_grad, sample_repaint
from .schedule import count_model_calls, jump_schedule, noise_tables

__all__ = [
    "CLASSIFIERS",
    "LIMITS",
    "MODELS",
    "Inpainter",
    "ModelInfo",
    "ModelLoadError",
    "default_dtype",
    "hub_mirror",
    "load",
    "load_hub",
]

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
    # guided-diffusion (ADM) checkpoints, downloaded from ``url`` and converted once (repaint.convert):
    url: str | None = None  # direct download URL of the .pt file
    filename: str | None = None  # its released file name
    preset: str | None = None  # repaint.convert.PRESETS entry with its architecture
    source: str | None = None  # page that publishes it (named in errors, for a download by hand)
    download_mb: int | None = None  # size of the download in MB (10^6 bytes), about
    num_classes: int = 0  # class-conditional models: number of classes (ImageNet: 1000); 0 = unconditional
    # A Hub repository holding the converted folder (``python -m repaint.convert ... --push-to-hub``): when set (here
    # or by REPAINT_HUB_MIRROR_<NAME>), it is loaded like any Hub model and ``url`` is never downloaded.
    hub_mirror: str | None = None
    # Work of one model call at batch 1, in TFLOP (torch.utils.flop_counter.FlopCounterMode on the architecture,
    # random weights): sizes the ZeroGPU slot before a run has been timed. A classifier's: forward + input gradient.
    tflop: float | None = None
    classifier: str | None = None  # CLASSIFIERS entry that guides it by default (classifier guidance, scale 1)


_GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"  # RePaint's download.sh
_REPAINT = "https://github.com/andreas128/RePaint (download.sh)"
_OPENAI = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
_GUIDED = "https://github.com/openai/guided-diffusion"

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            "celebahq",
            "google/ddpm-ema-celebahq-256",
            256,
            "Faces (CelebA-HQ), DDPM's model; GPU.",
            "apache-2.0",
            tflop=0.497,
        ),
        ModelInfo(
            "church",
            "google/ddpm-ema-church-256",
            256,
            "Churches (LSUN church outdoor); GPU.",
            "apache-2.0",
            tflop=0.497,
        ),
        ModelInfo(
            "bedroom", "google/ddpm-ema-bedroom-256", 256, "Bedrooms (LSUN bedroom); GPU.", "apache-2.0", tflop=0.497
        ),
        ModelInfo("cat", "google/ddpm-ema-cat-256", 256, "Cats (LSUN cat); GPU.", "apache-2.0", tflop=0.497),
        ModelInfo(
            "cifar10",
            "google/ddpm-cifar10-32",
            32,
            "Small objects (CIFAR-10), 32x32; runs on a CPU.",
            "apache-2.0",
            gpu_only=False,
            tflop=0.0124,
        ),
        ModelInfo(
            "bundled",
            None,
            32,
            "Cartoon faces (this project's model), 32x32, offline; seconds on a CPU.",
            "MIT",
            gpu_only=False,
            tflop=0.00055,
        ),
        ModelInfo(
            "places2",
            None,
            256,
            "Places2 scenes (landscapes, streets, rooms), the paper's RePaint model; GPU.",
            "CC-BY-NC-SA-4.0",
            url=_GDRIVE.format("1QEl-btGbzQz6IwkXiFGd49uQNTUtTHsk"),
            filename="places256_300000.pt",
            preset="places256",
            source=_REPAINT,
            download_mb=2211,
            tflop=2.24,
        ),
        ModelInfo(
            "celeba256",
            None,
            256,
            "Faces (CelebA-HQ), the paper's own RePaint face model; GPU.",
            "CC-BY-NC-SA-4.0",
            url=_GDRIVE.format("1norNWWGYP3EZ_o05DmoW1ryKuKMmhlCX"),
            filename="celeba256_250000.pt",
            preset="celeba256",
            source=_REPAINT,
            download_mb=2211,
            tflop=2.24,
        ),
        ModelInfo(
            "imagenet",
            None,
            256,
            "ImageNet, class-conditional (1000 classes), OpenAI's ADM guided by its classifier, as the paper; GPU.",
            "MIT",
            url=_OPENAI + "256x256_diffusion.pt",
            filename="256x256_diffusion.pt",
            preset="imagenet256",
            source=_GUIDED,
            download_mb=2215,
            num_classes=1000,
            tflop=2.24,
            classifier="imagenet256",
        ),
        ModelInfo(
            "imagenet_uncond",
            None,
            256,
            "ImageNet, unconditional, OpenAI's ADM; GPU.",
            "MIT",
            url=_OPENAI + "256x256_diffusion_uncond.pt",
            filename="256x256_diffusion_uncond.pt",
            preset="imagenet256_uncond",
            source=_GUIDED,
            download_mb=2211,
            tflop=2.24,
        ),
    )
}

#: Noisy-image classifiers for classifier guidance (Dhariwal & Nichol 2021), downloaded and converted once
#: (:mod:`repaint.classifier`); ``load(..., classifier=NAME)``.
CLASSIFIERS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            "imagenet256",
            None,
            256,
            "ImageNet noisy-image classifier (1000 classes), OpenAI's.",
            "MIT",
            url=_OPENAI + "256x256_classifier.pt",
            filename="256x256_classifier.pt",
            preset="imagenet256_classifier",
            source=_GUIDED,
            download_mb=216,
            num_classes=1000,
            tflop=0.296,
        ),
    )
}

#: Bounds on the API's settings (inclusive). ``steps`` is further bounded by the model's training steps.
LIMITS = {
    "steps": (1, 1000),
    "jump_length": (1, 1000),
    "jump_n_sample": (1, 20),
    "num_samples": (1, 16),
    "seed": (0, 2**63 - 1),
    "classifier_scale": (0, 100),
}


class ModelLoadError(RuntimeError):
    """A model could not be found or read; the message names the model and the reason."""


def _check_int(name: str, value) -> int:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


# Where a model's two components are, as diffusers' DiffusionPipeline.from_pretrained finds them (diffusers 0.42,
# pipelines/pipeline_loading_utils.py, load_sub_model): in the component's own folder where it exists, else at the
# root. The google/ddpm-* repositories hold both at the root, beside a DDPMPipeline model_index.json (their Hub file
# listings at main, as quoted in issue 29: config.json, diffusion_pytorch_model.bin, model_index.json,
# scheduler_config.json, README.md, images/); DDPMPipeline.save_pretrained writes unet/ and scheduler/.
UNET_DIR, SCHEDULER_DIR = "unet", "scheduler"
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")  # preferred first


def _component(root: Path, sub: str) -> Path:
    """``root/sub`` if that folder exists, else ``root`` (diffusers' rule, above)."""
    return root / sub if (root / sub).is_dir() else root


def scheduler_config(raw: dict) -> dict:
    """A scheduler config in today's keys: google/ddpm-cifar10-32 still has diffusers' pre-release one
    (``"_class_name": "GaussianDDPMScheduler"``, ``"timesteps": 1000``; issue 29 quotes its Hub file), whose
    ``timesteps`` is today's ``num_train_timesteps``."""
    config = dict(raw)
    if "timesteps" in config and "num_train_timesteps" not in config:
        config["num_train_timesteps"] = config.pop("timesteps")
    return config


def _check_unet_config(config: dict, name: str) -> None:
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ModelLoadError(f"model {name!r} is a {config['_class_name']}, not a UNet2DModel")


def _check_scheduler_config(sched: dict, name: str) -> None:
    if sched.get("prediction_type", "epsilon") != "epsilon":
        raise ModelLoadError(f"model {name!r} predicts {sched['prediction_type']!r}; RePaint here needs epsilon")


def _read_folder(root: Path, name: str, dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, dict]:
    from diffusers import UNet2DModel

    unet_dir, sched_dir = _component(root, UNET_DIR), _component(root, SCHEDULER_DIR)
    config_file = unet_dir / "config.json"
    sched_file = sched_dir / "scheduler_config.json"
    for f in (config_file, sched_file):
        if not f.is_file():
            raise ModelLoadError(f"model {name!r}: {f.relative_to(root)} is missing")
    has_st = (unet_dir / WEIGHTS[0]).is_file()
    if not has_st and not (unet_dir / WEIGHTS[1]).is_file():
        raise ModelLoadError(f"model {name!r}: no diffusion_pytorch_model.safetensors (or .bin) found")
    try:
        _check_unet_config(json.loads(config_file.read_text()), name)
        # diffusers reads safetensors, or a .bin with torch.load(weights_only=True): no code is executed.
        unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=has_st, low_cpu_mem_usage=False, torch_dtype=dtype)
        sched = scheduler_config(json.loads(sched_file.read_text()))
    except ModelLoadError:
        raise
    except Exception as e:  # corrupt weights, wrong shapes, bad json
        log.debug("model %r: reading %s failed", name, root, exc_info=True)  # paths stay in the log, not the message
        raise ModelLoadError(f"model {name!r}: cannot read its weights or config ({type(e).__name__})") from None
    _check_scheduler_config(sched, name)
    return unet, sched


def _download(repo_id: str, name: str, cache_dir=None) -> Path:
    """The local snapshot of a Hub repository holding what a load reads, and nothing else (the cache when offline).

    Each component's config is fetched from its own folder if the repository has one, else from the root
    (:func:`_component`); the UNet's class and the scheduler's prediction type are checked before any weights are
    fetched, then only the UNet's weights: safetensors if the repository has them, else the ``.bin``. Other
    components (a pipeline's ``vae/``, ``text_encoder/``) and files (``modeling_*.py``, images) are never fetched.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    cache_only = False  # set once the Hub could not be reached: each further file would wait for its retries again

    def fetch(*candidates: str) -> Path:
        """The first of ``candidates`` the repository (or the cache) has."""
        nonlocal cache_only
        for i, filename in enumerate(candidates):
            try:
                return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir, local_files_only=cache_only))
            except EntryNotFoundError as e:  # not in the repository, or (LocalEntryNotFoundError) not in the cache
                cache_only = cache_only or isinstance(e, LocalEntryNotFoundError)
                if i == len(candidates) - 1:
                    raise _hub_error(e, repo_id, name, " or ".join(candidates)) from None
            except Exception as e:
                raise _hub_error(e, repo_id, name, filename) from None
        raise AssertionError("no candidates")

    config_file = fetch(f"{UNET_DIR}/config.json", "config.json")
    root = config_file.parent.parent if config_file.parent.name == UNET_DIR else config_file.parent
    sched_file = fetch(f"{SCHEDULER_DIR}/scheduler_config.json", "scheduler_config.json")
    try:
        config, sched = json.loads(config_file.read_text()), scheduler_config(json.loads(sched_file.read_text()))
    except ValueError:
        raise ModelLoadError(f"model {name!r} ({repo_id}): its config is not valid JSON") from None
    _check_unet_config(config, name)
    _check_scheduler_config(sched, name)
    prefix = "" if config_file.parent == root else f"{UNET_DIR}/"
    fetch(*(prefix + w for w in WEIGHTS))
    return root


def _hub_error(e: Exception, repo_id: str, name: str, filename: str) -> ModelLoadError:
    """What went wrong fetching ``filename`` of ``repo_id``, in words (huggingface_hub's error classes)."""
    from huggingface_hub import constants, errors

    label = f"model {name!r}" + ("" if name == repo_id else f" ({repo_id})")
    if isinstance(e, errors.GatedRepoError):  # a RepositoryNotFoundError too: first
        why = (
            f"is gated on the Hub: accept its conditions on its page (https://huggingface.co/{repo_id}) and log in "
            "(HF_TOKEN)"
        )
    elif isinstance(e, errors.RepositoryNotFoundError):
        why = "is not a repository on the Hub (or it is private: log in with HF_TOKEN)"
    elif isinstance(e, errors.RevisionNotFoundError):
        why = "has no main revision on the Hub"
    elif isinstance(e, errors.LocalEntryNotFoundError):  # an EntryNotFoundError too: before it
        where = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        why = f"is not in the local cache and {where}; connect to the internet once, or use the offline model 'bundled'"
    elif isinstance(e, errors.EntryNotFoundError):
        why = f"has no {filename} on the Hub: it is not a diffusers UNet2DModel repository"
    else:
        log.warning("model %r: fetching %s of %s failed", name, filename, repo_id, exc_info=True)
        why = f"could not be downloaded ({type(e).__name__})"
    return ModelLoadError(f"{label} {why}")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _adm_cache(cache_dir) -> Path:
    """Where downloaded and converted ADM checkpoints live: ``repaint-adm/`` in the Hugging Face hub cache."""
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE) / "repaint-adm"


def _fetch(url: str, dest: Path, name: str) -> None:
    """Download ``url`` to ``dest`` with a progress bar (stderr); written to ``.part`` first, then renamed."""
    from tqdm import tqdm

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            if r.headers.get_content_type() == "text/html":
                raise OSError("the host sent a web page, not the file (a quota or sign-in page)")
            total = int(r.headers.get("Content-Length") or 0) or None
            with open(part, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and part.stat().st_size != total:
                raise OSError(f"the download stopped after {part.stat().st_size} of {total} bytes")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.rename(dest)


def _by_hand(filename: str, source: str) -> str:
    return (
        f"download {filename} by hand from {source}, then convert it once: "
        f"python -m repaint.convert {filename} DIR, and load DIR (or load the .pt file itself)"
    )


MIRROR_ENV = "REPAINT_HUB_MIRROR_"


def hub_mirror(info: ModelInfo) -> str | None:
    """The Hub mirror of a converted registry model: ``REPAINT_HUB_MIRROR_<NAME>`` (e.g. REPAINT_HUB_MIRROR_PLACES2=
    owner/name; empty: none), else the entry's ``hub_mirror``."""
    value = os.environ.get(MIRROR_ENV + info.name.upper(), info.hub_mirror)
    return (value.strip() or None) if value else None


def _mirror_folder(info: ModelInfo, mirror: str, cache_dir) -> Path:
    """A registry ADM model from its Hub mirror (the Space preloads it, ``preload_from_hub``); a folder converted
    here before is used if the mirror cannot be had. The request-time download of ``info.url`` is not tried."""
    try:
        return _download(mirror, info.name, cache_dir)
    except ModelLoadError as e:
        local = _adm_cache(cache_dir) / info.name / "diffusers"
        if (local / "config.json").is_file():
            log.warning("model %r: mirror %s not available, using the folder converted here before", info.name, mirror)
            return local
        raise ModelLoadError(
            f"{e} (its Hub mirror, {MIRROR_ENV}{info.name.upper()}={mirror}; unset it to download "
            f"{info.filename} from {info.source or info.url} instead)"
        ) from None


def _adm_folder(info: ModelInfo, cache_dir) -> Path:
    """The converted folder of a registry ADM model or classifier: downloaded and converted on first use, offline
    after."""
    from .classifier import CLASSIFIER_PRESETS, convert_classifier
    from .convert import convert_adm

    converter = convert_classifier if info.preset in CLASSIFIER_PRESETS else convert_adm
    root = _adm_cache(cache_dir) / ("classifiers" if converter is convert_classifier else "") / info.name
    folder = root / "diffusers"
    if (folder / "config.json").is_file():
        return folder
    ckpt = root / info.filename
    if not ckpt.is_file():
        if _offline():
            raise ModelLoadError(
                f"model {info.name!r} is not downloaded yet and HF_HUB_OFFLINE is set; "
                + _by_hand(info.filename, info.source or info.url)
            )
        try:
            _fetch(info.url, ckpt, info.name)
        except Exception as e:
            raise ModelLoadError(
                f"model {info.name!r}: download from {info.url} failed ({type(e).__name__}: {e}); "
                + _by_hand(info.filename, info.source or info.url)
            ) from None
    try:
        converter(ckpt, folder, preset=info.preset)
    except Exception as e:
        raise ModelLoadError(
            f"model {info.name!r}: {info.filename} could not be converted ({e}); delete it to download it again"
        ) from None
    ckpt.unlink()  # the converted folder holds the same weights
    return folder


def _pt_folder(path: Path, cache_dir) -> Path:
    """A released ADM checkpoint file (a UNet or a classifier), converted once (cached by name, size and time) with
    its known preset."""
    from .classifier import CLASSIFIER_FILES, convert_classifier
    from .convert import KNOWN_FILES, convert_adm

    known = {**KNOWN_FILES, **CLASSIFIER_FILES}
    preset = known.get(path.name)
    if preset is None:
        raise ModelLoadError(
            f"{path.name} is not a known checkpoint name ({', '.join(known)}); convert it "
            "with its options: python -m repaint.convert FILE DIR --image_size ... (see --help)"
        )
    converter = convert_classifier if path.name in CLASSIFIER_FILES else convert_adm
    stat = path.stat()
    folder = _adm_cache(cache_dir) / "files" / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}"
    if not (folder / "config.json").is_file():
        try:
            converter(path, folder, preset=preset)
        except Exception as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise ModelLoadError(f"{path.name} could not be converted with preset {preset!r} ({e})") from None
    return folder


def default_dtype(device) -> torch.dtype:
    """bfloat16 on a CUDA GPU that supports it (else float16), float32 elsewhere.

    bfloat16 keeps float32's range (no overflow) at 8 bits of precision; on the bundled model it harmonizes as
    well as float32 (docs/results.md, measured on the CPU)."""
    if torch.device(device).type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _dtype(dtype, device) -> torch.dtype:
    if dtype is None:
        return default_dtype(device)
    if isinstance(dtype, str):
        if dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
        return getattr(torch, dtype)
    return dtype


def load(name_or_path: str | Path = "bundled", device=None, dtype=None, cache_dir=None, classifier=None) -> Inpainter:
    """Load an epsilon-predicting diffusers ``UNet2DModel`` and its DDPM scheduler config.

    ``name_or_path``: a registry name (:data:`MODELS`), a local folder, a released guided-diffusion ``.pt`` file
    (:data:`repaint.convert.KNOWN_FILES`, converted once into the cache), or a Hub repository id (``owner/name``;
    with ``HF_HUB_OFFLINE=1`` only the cache is read). Registry ADM models are downloaded and converted once into
    ``repaint-adm/`` of the Hugging Face cache (``cache_dir``), unless they have a Hub mirror (:func:`hub_mirror`),
    read like any Hub model. A folder or repository gives its UNet from ``unet/`` and its scheduler config from
    ``scheduler/`` where those folders exist, else from its root, as diffusers reads a pipeline: the google/ddpm-*
    repositories have both at the root beside a DDPMPipeline model_index.json (:data:`UNET_DIR`'s comment). From
    the Hub only those files are fetched (:func:`_download`). Remote code is never run; weights are safetensors or
    weights-only pickles. ``dtype``: :func:`default_dtype` if unset.

    ``classifier``: a noisy-image classifier for classifier guidance (``inpaint(..., classifier_scale=...)``): a
    :data:`CLASSIFIERS` name (downloaded and converted once, like the registry's ADM models), a folder written by
    :func:`repaint.convert_classifier`, or a released classifier ``.pt`` file. None: the registry entry's own
    (``imagenet`` is guided by ``imagenet256``, as the paper), else none; False: none.
    """
    key = str(name_or_path)
    info = MODELS.get(key)
    if classifier is None:
        classifier = info.classifier if info is not None else None
    pipe = _load_model(key, device, dtype, cache_dir)
    if classifier is not None and classifier is not False:
        pipe.attach_classifier(_load_classifier(classifier, pipe, cache_dir))
    return pipe


def _load_classifier(name_or_path, pipe: Inpainter, cache_dir):
    from .classifier import read_classifier

    key = str(name_or_path)
    if key in CLASSIFIERS:
        folder = _adm_folder(CLASSIFIERS[key], cache_dir)
    elif Path(key).is_dir():
        folder = Path(key)
    elif Path(key).is_file() and key.endswith(".pt"):
        folder = _pt_folder(Path(key), cache_dir)
    else:
        raise ModelLoadError(
            f"unknown classifier {key!r}: not a classifier name ({', '.join(CLASSIFIERS)}), folder or .pt file"
        )
    try:
        model = read_classifier(folder, torch.float32)
    except Exception as e:  # noqa: BLE001 - wrong folder, corrupt weights, bad json
        log.debug("classifier %r: reading %s failed", key, folder, exc_info=True)
        raise ModelLoadError(f"classifier {key!r}: cannot read it ({type(e).__name__}: {e})") from None
    if model.config.sample_size != pipe.resolution:
        raise ModelLoadError(
            f"classifier {key!r} is for {model.config.sample_size}x{model.config.sample_size} images, "
            f"model {pipe.name!r} makes {pipe.resolution}x{pipe.resolution}"
        )
    return model.to(pipe.device).eval().requires_grad_(False)


def _load_model(key: str, device, dtype, cache_dir) -> Inpainter:
    info = MODELS.get(key)
    if info is not None and info.url is not None:
        mirror = hub_mirror(info)
        root = _mirror_folder(info, mirror, cache_dir) if mirror else _adm_folder(info, cache_dir)
    elif info is not None and info.repo_id is None:
        root = BUNDLED_DIR
    elif info is not None:
        root = _download(info.repo_id, key, cache_dir)
    elif Path(key).is_dir():
        root = Path(key)
    elif Path(key).is_file() and key.endswith(".pt"):
        root = _pt_folder(Path(key), cache_dir)
    elif key.count("/") == 1 and not Path(key).exists():
        return load_hub(key, device, dtype, cache_dir)
    else:
        raise ModelLoadError(f"unknown model {key!r}: not a registry name ({', '.join(MODELS)}), folder or Hub id")
    return _from_folder(root, key, device, dtype)


def load_hub(repo_id: str, device=None, dtype=None, cache_dir=None) -> Inpainter:
    """Load from the Hugging Face Hub only (or its cache): ``repo_id`` is never read as a local path."""
    return _from_folder(_download(repo_id, repo_id, cache_dir), repo_id, device, dtype)


def _from_folder(root: Path, key: str, device, dtype) -> Inpainter:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    unet, sched = _read_folder(root, key, _dtype(dtype, device))
    return Inpainter(_place(unet, device).eval().requires_grad_(False), sched, key)


def _place(unet: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The UNet on ``device``; on a CUDA GPU with channels_last weights, the layout cuDNN's convolutions and
    tensor cores prefer (their outputs follow it). Not measured on a GPU (none was lent to this project). A CPU
    keeps the default layout: channels_last measured 8-10% faster there on the bundled model but no faster on
    ADM-256, and it moves results by rounding, while every CPU figure and bit-exact test here is of the default
    layout (docs/deploy.md, step 7)."""
    unet = unet.to(device)
    return unet.to(memory_format=torch.channels_last) if device.type == "cuda" else unet


def _is_preset(mask) -> bool:
    """A preset name (an unknown name, not a file either, is refused by masks.preset with the choices)."""
    return isinstance(mask, str) and (mask in masks.PRESETS or not Path(mask).is_file())


def _region(mask, keep_mask: bool, invert: bool) -> np.ndarray:
    """The region to fill of a mask image, array or file, at its own (upright) size: bool (H, W)."""
    if mask is None:
        raise ValueError("no mask given: draw the region to fill or pick a preset")
    if not isinstance(mask, (Image.Image, np.ndarray)):
        mask = images.open_image(mask)
    return masks.load_mask(mask, keep=keep_mask, invert=invert)


class Inpainter:
    """A loaded model: ``inpaint`` fills a masked image, ``compare`` also gives the n = 1 result."""

    #: The noisy-image classifier guiding the sampler (:meth:`attach_classifier`), ``classifier(x_t, t) -> logits``
    #: (B, classes) for training timesteps t; None: unguided.
    classifier: torch.nn.Module | None = None

    def __init__(self, unet: torch.nn.Module, scheduler_config: dict, name: str = "model"):
        self.unet = unet
        self.scheduler_config = dict(scheduler_config)
        self.name = name
        self.resolution = int(unet.config.sample_size)
        self.channels = int(unet.config.in_channels)
        self.train_steps = int(self.scheduler_config.get("num_train_timesteps", 1000))
        #: Classes of a class-conditional model (ImageNet ADM: 1000); 0 = unconditional.
        self.num_classes = int(unet.config.get("num_class_embeds") or 0)
        #: The model's second output half sets the step's variance (guided-diffusion's learn_sigma).
        self.learned_variance = self.scheduler_config.get("variance_type") == "learned_range"
        self._fingerprint: str | None = None

    def attach_classifier(self, classifier: torch.nn.Module) -> None:
        """Guide this model with ``classifier`` (:class:`repaint.classifier.NoisyClassifier`); its classes become the
        model's if the model itself is unconditional. Guided runs default to ``classifier_scale=1``."""
        self.classifier = classifier
        self._fingerprint = None  # the classifier's weights change what a guided run makes
        self.num_classes = self.num_classes or int(classifier.config.num_classes)

    def check_scale(self, classifier_scale) -> float:
        """The guidance scale of a run: given, or (None) 1 with a classifier (the paper's ImageNet setting) and 0
        without; a ValueError for a scale out of :data:`LIMITS` or one without a classifier."""
        if classifier_scale is None:
            return 0.0 if self.classifier is None else 1.0
        low, high = LIMITS["classifier_scale"]
        if (
            isinstance(classifier_scale, bool)
            or not isinstance(classifier_scale, (int, float, np.number))
            or not low <= classifier_scale <= high
        ):
            raise ValueError(f"classifier_scale must be a number from {low} to {high}, got {classifier_scale!r}")
        if classifier_scale and self.classifier is None:
            raise ValueError(f"model {self.name!r} has no classifier: leave classifier_scale at 0 (or load one)")
        return float(classifier_scale)

    def fingerprint(self) -> str:
        """SHA-256 of the weights as loaded (names, dtypes, shapes, bytes) and the scheduler config: what a model's
        name does not pin (a local folder can be retrained in place). Computed once."""
        if self._fingerprint is None:
            h = hashlib.sha256(json.dumps(self.scheduler_config, sort_keys=True, default=str).encode())
            guide = {} if self.classifier is None else self.classifier.state_dict()
            for name, t in [*self.unet.state_dict().items(), *(("classifier." + k, v) for k, v in guide.items())]:
                t = t.detach().to("cpu").contiguous()
                h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def eps(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The model's output for the sampler, in float32: the noise prediction (C channels), followed for a
        learned_range model by its variance interpolation v (C more); a learned half is otherwise ignored."""
        if self.unet.config.num_class_embeds is None:  # labels for the classifier only (an unconditional UNet)
            class_labels = None
        out = self.unet(x.to(self.dtype), t, class_labels=class_labels).sample
        return out[:, : self.channels * (2 if self.learned_variance else 1)].float()

    def class_labels(self, seeds: Sequence[int], class_label: int | None = None) -> list[int] | None:
        """One class per sample: ``class_label`` for all, or (None) a random class drawn from each sample's seed,
        as the official test.py draws a random class per sample. None for an unconditional model."""
        if not self.num_classes:
            if class_label is not None:
                raise ValueError(f"model {self.name!r} is not class-conditional: leave class_label unset")
            return None
        if class_label is None:
            return [
                int(torch.randint(self.num_classes, (), generator=torch.Generator().manual_seed(int(s)))) for s in seeds
            ]
        if (
            isinstance(class_label, bool)
            or not isinstance(class_label, (int, np.integer))
            or not 0 <= class_label < self.num_classes
        ):
            raise ValueError(f"class_label must be an integer from 0 to {self.num_classes - 1}, got {class_label!r}")
        return [int(class_label)] * len(seeds)

    def prepare(self, image, mask, *, keep_mask: bool = False, invert: bool = False, seed: int = 0):
        """Fit an image and its mask to the model: (uint8 (R, R, 3), bool (R, R)), True = fill.

        ``mask``: a preset name (:data:`repaint.masks.PRESETS`, made at the model's resolution), or a mask
        image / array of the image's size (white or opaque = fill; ``keep_mask=True`` for white = keep). A preset
        always names the region to fill: ``keep_mask`` does not apply to it, ``invert`` does.
        """
        img = images.open_image(image)
        rgb = images.fit_image(img, self.resolution)
        if _is_preset(mask):
            m = self.preset_mask(mask, seed, invert=invert)  # keep_mask: mask files only
        else:
            m = images.fit_mask(_region(mask, keep_mask, invert), images.upright_size(img), self.resolution)
        return rgb, m

    def preset_mask(self, name: str, seed: int = 0, *, invert: bool = False) -> np.ndarray:
        """The preset ``name`` at the model's resolution, drawn from ``seed`` if random: bool (R, R), True = fill."""
        return masks.preset(name, self.resolution, self.resolution, seed) ^ invert

    def prepare_window(self, image, mask, *, keep_mask: bool = False, invert: bool = False, seed: int = 0):
        """Like :meth:`prepare`, for a result at the image's own size (:mod:`repaint.window`): returns
        (upright uint8 (H, W, 3), bool (H, W) fill mask, the window, uint8 (R, R, 3), bool (R, R)).

        A mask image gets a window around its mask. A preset is made on the model's grid over the centred square,
        as :meth:`prepare` makes it; its window is that square.
        """
        img = images.open_image(image)
        rgb = np.asarray(images.to_rgb(img, max_side=None))
        h, w = rgb.shape[:2]
        if _is_preset(mask):
            small_rgb, small = self.prepare(img, mask, keep_mask=keep_mask, invert=invert, seed=seed)
            win = window.centre_window(w, h)
            return rgb, window.spread(small, win, h, w), win, small_rgb, small
        region = _region(mask, keep_mask, invert)
        if region.shape != (h, w):
            raise ValueError(
                f"the mask is {region.shape[1]}x{region.shape[0]} but the image is {w}x{h}: they must match"
            )
        if not region.any():
            return rgb, region, window.centre_window(w, h), *self.prepare(img, region)
        win = window.mask_window(region, self.resolution)
        return (rgb, region, win, *window.model_input(rgb, region, win, self.resolution))

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
        return (
            steps,
            jump_length,
            _check_int("jump_n_sample", jump_n_sample),
            _check_int("seed", seed),
            _check_int("num_samples", num_samples),
        )

    @torch.inference_mode()
    def sample(
        self,
        images_u8: np.ndarray,
        fill: np.ndarray,
        schedules: list[list[int]],
        seeds: list[int],
        callback: Callback | None = None,
        class_labels: Sequence[int] | None = None,
        paste: bool = True,
        classifier_scale: float = 0.0,
    ) -> np.ndarray:
        """The batched core: uint8 (B, R, R, 3) fitted images and bool (B, R, R) masks (or one of each, shared),
        one schedule and one seed per sample -> uint8 (B, R, R, 3), known pixels exact.

        ``class_labels``: one class per sample for a class-conditional model (default: :meth:`class_labels`).
        ``classifier_scale``: classifier guidance's scale (needs :attr:`classifier`); 0 runs unguided, the classifier
        never called.
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
        if class_labels is None:
            class_labels = self.class_labels(seeds)
        labels = None if class_labels is None else torch.tensor(list(class_labels), dtype=torch.long, device=dev)
        guide = None
        if self.check_scale(classifier_scale):
            guide = functools.partial(classifier_grad, self.classifier, scale=float(classifier_scale))
        out = sample_repaint(
            self.eps,
            x,
            image,
            m,
            noise_tables(self.scheduler_config, steps),
            schedules,
            gens,
            callback,
            class_labels=labels,
            guide=guide,
        )
        result = images.from_tensor(out)
        if not paste:
            return result
        keep = np.broadcast_to(~fill, result.shape[:3])
        result[keep] = np.broadcast_to(images_u8, result.shape)[keep]  # exact already (abar = 1 at the end)
        return result

    def _samples(
        self,
        image,
        mask,
        steps,
        jump_length,
        ns,
        seed,
        num_samples,
        callback,
        keep_mask,
        invert,
        class_label=None,
        full_size=False,
        classifier_scale=None,
    ):
        steps, jump_length, _, seed, num_samples = self.check_settings(steps, jump_length, max(ns), seed, num_samples)
        scale = self.check_scale(classifier_scale)
        labels = self.class_labels([seed + i for i in range(num_samples)], class_label)
        if full_size:
            big, big_mask, win, rgb, m = self.prepare_window(image, mask, keep_mask=keep_mask, invert=invert, seed=seed)
        else:
            rgb, m = self.prepare(image, mask, keep_mask=keep_mask, invert=invert, seed=seed)
        # A random preset: each sample draws its own mask from its own seed, as a run alone with that seed does.
        own = masks.is_random(mask)
        fills = [m] + [self.preset_mask(mask, seed + i, invert=invert) if own else m for i in range(1, num_samples)]
        if not any(f.any() for f in fills):
            log.info("empty mask: nothing to fill, returning the input")
            return [[Image.fromarray(big if full_size else rgb) for _ in range(num_samples)] for _ in ns]
        if any(f.all() for f in fills):
            log.info("full mask: nothing is known, this is unconditional generation")
        schedules = [jump_schedule(steps, jump_length, n) for n in ns for _ in range(num_samples)]
        seeds = [seed + i for _ in ns for i in range(num_samples)]
        out = self.sample(
            rgb,
            np.stack(fills * len(ns)),
            schedules,
            seeds,
            callback,
            None if labels is None else labels * len(ns),
            classifier_scale=scale,
        )
        if full_size:
            big_masks = [big_mask] + [window.spread(f, win, *big.shape[:2]) if own else big_mask for f in fills[1:]]
            out = [window.paste_fill(big, bm, win, a) for a, bm in zip(out, big_masks * len(ns))]
        results = [[Image.fromarray(a) for a in out[k * num_samples : (k + 1) * num_samples]] for k in range(len(ns))]
        for row in results if labels is not None else []:
            for img, label in zip(row, labels):
                img.info["class_label"] = label  # which class each sample was drawn for
        return results

    def inpaint(
        self,
        image,
        mask,
        *,
        steps: int = 250,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        seed: int = 0,
        num_samples: int = 1,
        callback: Callback | None = None,
        keep_mask: bool = False,
        invert: bool = False,
        class_label: int | None = None,
        full_size: bool = False,
        classifier_scale: float | None = None,
    ) -> list[Image.Image]:
        """Fill the masked region (True / white = fill) with RePaint; sample ``i`` uses seed ``seed + i``.

        Returns ``num_samples`` RGB images at the model's resolution (the centred square); known pixels equal the
        fitted input exactly. ``full_size=True``: at the image's own size and orientation instead, filled through
        a square window around the mask (:mod:`repaint.window`); every pixel outside the mask is the input's.
        ``class_label``: a class-conditional model's class for all samples; unset, each sample draws a random
        class from its seed (``image.info["class_label"]`` says which).
        ``classifier_scale``: classifier guidance towards each sample's class (Dhariwal & Nichol 2021, as RePaint's
        ImageNet runs): unset, 1 for a model with a classifier (the paper's setting) and 0 without; 0 is unguided.
        """
        return self._samples(
            image,
            mask,
            steps,
            jump_length,
            [jump_n_sample],
            seed,
            num_samples,
            callback,
            keep_mask,
            invert,
            class_label,
            full_size,
            classifier_scale,
        )[0]

    def compare(
        self,
        image,
        mask,
        *,
        steps: int = 250,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        seed: int = 0,
        num_samples: int = 1,
        callback: Callback | None = None,
        keep_mask: bool = False,
        invert: bool = False,
        class_label: int | None = None,
        full_size: bool = False,
        classifier_scale: float | None = None,
    ) -> tuple[list[Image.Image], list[Image.Image]]:
        """``inpaint`` with ``jump_n_sample`` and with 1 from the same seeds, run together in one batch.

        Returns ``(resampled, plain)``: the same images as the two ``inpaint`` calls.
        """
        resampled, plain = self._samples(
            image,
            mask,
            steps,
            jump_length,
            [jump_n_sample, 1],
            seed,
            num_samples,
            callback,
            keep_mask,
            invert,
            class_label,
            full_size,
            classifier_scale,
        )
        return resampled, plain
