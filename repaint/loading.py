"""Loading a model: a registry name, a local folder, a released .pt file or a Hugging Face Hub repository."""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.request
from pathlib import Path

import torch

from .checkpoints import IncompleteWeights, from_pretrained_whole
from .pipeline import Inpainter
from .registry import BUNDLED_DIR, CLASSIFIERS, MIRROR_ENV, MODELS, ModelInfo, hub_mirror

__all__ = ["ModelLoadError", "default_dtype", "load", "load_hub", "place_unet", "scheduler_config"]

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model could not be found or read; the message names the model and the reason."""


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
        unet = from_pretrained_whole(
            UNet2DModel, unet_dir, use_safetensors=has_st, low_cpu_mem_usage=False, torch_dtype=dtype
        )
        sched = scheduler_config(json.loads(sched_file.read_text()))
    except ModelLoadError:
        raise
    except IncompleteWeights as e:  # never run a model part random
        raise ModelLoadError(f"model {name!r}: {e}") from None
    except Exception as e:  # corrupt weights, wrong shapes, bad json
        log.debug("model %r: reading %s failed", name, root, exc_info=True)  # paths stay in the log, not the message
        raise ModelLoadError(f"model {name!r}: cannot read its weights or config ({type(e).__name__})") from None
    _check_scheduler_config(sched, name)
    return unet, sched


def _download(repo_id: str, name: str, cache_dir=None, *, token=None, bytes_max: int | None = None) -> Path:
    """The local snapshot of a Hub repository holding what a load reads, and nothing else (the cache when offline).

    Each component's config is fetched from its own folder if the repository has one, else from the root
    (:func:`_component`); the UNet's class and the scheduler's prediction type are checked before any weights are
    fetched, then only the UNet's weights: safetensors if the repository has them, else the ``.bin``. Other
    components (a pipeline's ``vae/``, ``text_encoder/``) and files (``modeling_*.py``, images) are never fetched.
    Every file after the first is fetched at the commit the first came from, so that a repository changed meanwhile
    cannot mix two of its versions (or change a file whose size was read).

    ``token``: huggingface_hub's (None: the logged-in user's, ``HF_TOKEN``; False: none, anonymous). ``bytes_max``:
    the files' sizes in all at most this, each read from the Hub (the file list's size, a HEAD request) before it is
    downloaded or read; None: no limit.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    label = _label(name, repo_id)
    cache_only = False  # set once the Hub could not be reached: each further file would wait for its retries again
    revision, budget = None, bytes_max  # the commit of the first file; what the size limit leaves

    def sized(filename: str, kwargs: dict) -> None:
        """Refuses ``filename`` before it is fetched (with ``kwargs``) if it is larger than what ``bytes_max``
        leaves."""
        nonlocal budget
        if budget is None:
            return
        size = hf_hub_download(repo_id, filename, dry_run=True, **kwargs).file_size
        if size is None:
            raise ModelLoadError(f"{label}: the Hub gave no size for {filename}, so it is not downloaded")
        if size > budget:
            raise ModelLoadError(
                f"{label} is too large: its {filename} is {size / 1e6:,.1f} MB, and a Hub model here may take at "
                f"most {bytes_max / 1e6:,.1f} MB in all"
            )
        budget -= size

    def fetch(*candidates: str) -> Path:
        """The first of ``candidates`` the repository (or the cache) has."""
        nonlocal cache_only
        for i, filename in enumerate(candidates):
            kwargs = dict(revision=revision, cache_dir=cache_dir, local_files_only=cache_only, token=token)
            try:
                sized(filename, kwargs)
                return Path(hf_hub_download(repo_id, filename, **kwargs))
            except ModelLoadError:
                raise
            except EntryNotFoundError as e:  # not in the repository, or (LocalEntryNotFoundError) not in the cache
                cache_only = cache_only or isinstance(e, LocalEntryNotFoundError)
                if i == len(candidates) - 1:
                    raise _hub_error(e, repo_id, name, " or ".join(candidates)) from None
            except Exception as e:
                raise _hub_error(e, repo_id, name, filename) from None
        raise AssertionError("no candidates")

    config_file = fetch(f"{UNET_DIR}/config.json", "config.json")
    root = config_file.parent.parent if config_file.parent.name == UNET_DIR else config_file.parent
    revision = root.name  # the snapshot's folder is named by its commit (huggingface_hub's cache layout)
    sched_file = fetch(f"{SCHEDULER_DIR}/scheduler_config.json", "scheduler_config.json")
    try:
        config, sched = json.loads(config_file.read_text()), scheduler_config(json.loads(sched_file.read_text()))
    except ValueError:
        raise ModelLoadError(f"{label}: its config is not valid JSON") from None
    _check_unet_config(config, name)
    _check_scheduler_config(sched, name)
    prefix = "" if config_file.parent == root else f"{UNET_DIR}/"
    fetch(*(prefix + w for w in WEIGHTS))
    return root


def _label(name: str, repo_id: str) -> str:
    return f"model {name!r}" + ("" if name == repo_id else f" ({repo_id})")


def _hub_error(e: Exception, repo_id: str, name: str, filename: str) -> ModelLoadError:
    """What went wrong fetching ``filename`` of ``repo_id``, in words (huggingface_hub's error classes)."""
    from huggingface_hub import constants, errors

    label = _label(name, repo_id)
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
    from .adm import convert_adm
    from .classifier import CLASSIFIER_PRESETS, convert_classifier

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
    from .adm import KNOWN_FILES, convert_adm
    from .classifier import CLASSIFIER_FILES, convert_classifier

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


def load_hub(repo_id: str, device=None, dtype=None, cache_dir=None, *, token=None, bytes_max=None) -> Inpainter:
    """Load from the Hugging Face Hub only (or its cache): ``repo_id`` is never read as a local path. ``token`` and
    ``bytes_max``: as :func:`_download` takes them (False: anonymous; the files' size limit)."""
    return _from_folder(
        _download(repo_id, repo_id, cache_dir, token=token, bytes_max=bytes_max), repo_id, device, dtype
    )


def _from_folder(root: Path, key: str, device, dtype) -> Inpainter:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    unet, sched = _read_folder(root, key, _dtype(dtype, device))
    return Inpainter(place_unet(unet, device).eval().requires_grad_(False), sched, key)


def place_unet(unet: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The UNet on ``device``; on a CUDA GPU with channels_last weights, the layout cuDNN's convolutions and
    tensor cores prefer (their outputs follow it). A CPU keeps the default layout, which every CPU figure and
    bit-exact test here is of (docs/deploy.md, step 7, has what channels_last measured on this CPU)."""
    unet = unet.to(device)
    return unet.to(memory_format=torch.channels_last) if device.type == "cuda" else unet
