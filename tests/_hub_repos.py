"""The google/ddpm-* repositories as the Hugging Face Hub holds them at ``main``, with stand-in weights: for tests of
loading them from a Hub cache (offline) and from a loopback Hub (downloads).

Source of the file lists and configs: the Hub's file listings of the five repositories at main and cifar10's
``scheduler_config.json``, as stored by the project's search tool and quoted in issue 29 (2026-12):

- google/ddpm-ema-celebahq-256, -church-256, -bedroom-256 and -cat-256: config.json, diffusion_pytorch_model.bin
  (455 MB), model_index.json, scheduler_config.json, README.md, images/;
- google/ddpm-cifar10-32: the same, and modeling_ddpm.py.

The UNet and scheduler files sit at the root beside a ``DDPMPipeline`` model_index.json; no ``unet/`` or
``scheduler/`` folder (those were in the repositories' first commits only). cifar10's scheduler config is diffusers'
pre-release one: ``"_class_name": "GaussianDDPMScheduler"``, ``"timesteps": 1000``, ``"variance_type":
"fixed_large"``; the others are today's ``DDPMScheduler`` configs. What the quote does not give is marked as such
below: the files' other keys, the names of the pictures in ``images/`` and the README's text.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from _tiny import tiny_scheduler, tiny_unet

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CIFAR10 = "google/ddpm-cifar10-32"
# A DDPMPipeline index (its class and components as quoted; the diffusers version is not, any will do).
MODEL_INDEX = {
    "_class_name": "DDPMPipeline",
    "_diffusers_version": "0.1.1",
    "scheduler": ["diffusers", "DDPMScheduler"],
    "unet": ["diffusers", "UNet2DModel"],
}
# cifar10's pre-release scheduler config: the three quoted keys (the file's other keys, if any, are not quoted).
CIFAR10_SCHEDULER = {"_class_name": "GaussianDDPMScheduler", "timesteps": 1000, "variance_type": "fixed_large"}
# modeling_ddpm.py is remote code, never to be imported: if it ever is, it says so loudly.
REMOTE_CODE = b'raise SystemExit("modeling_ddpm.py was imported: remote code ran")\n'


def _json(data: dict) -> bytes:
    return json.dumps(data, indent=2).encode()


def _bin(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def ddpm_repo(repo_id: str, weights_from: Path | None = None) -> dict[str, bytes]:
    """path -> bytes of ``repo_id`` (a google/ddpm-* repository) as the Hub holds it at main: its real file list,
    with a tiny random UNet (16x16) or the UNet folder ``weights_from`` (config.json and weights, e.g. the bundled
    model) as its weights, always as a ``.bin`` like the real ones."""
    if weights_from is None:
        unet = tiny_unet()
        config, state = unet.to_json_string().encode(), unet.state_dict()  # what save_pretrained writes
    else:
        from safetensors.torch import load_file

        config = (weights_from / "config.json").read_bytes()
        state = load_file(weights_from / "diffusion_pytorch_model.safetensors")
    scheduler = CIFAR10_SCHEDULER if repo_id == CIFAR10 else dict(tiny_scheduler().config, _class_name="DDPMScheduler")
    files = {
        "config.json": config,
        "diffusion_pytorch_model.bin": _bin(state),
        "model_index.json": _json(MODEL_INDEX),
        "scheduler_config.json": _json(scheduler),
        "README.md": f"# {repo_id}\n(the model card's text is not quoted)\n".encode(),
        "images/generated_image_0.png": b"\x89PNG (a sample picture; its name is not quoted)",
    }
    if repo_id == CIFAR10:
        files["modeling_ddpm.py"] = REMOTE_CODE
    return files


def write_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """``files`` as a Hugging Face Hub cache holds a download of ``repo_id`` at main (blobs as plain files in the
    snapshot): ``cache`` is then a ``cache_dir`` / ``HF_HUB_CACHE``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for path, data in files.items():
        (repo / "snapshots" / COMMIT / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / COMMIT / path).write_bytes(data)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache
