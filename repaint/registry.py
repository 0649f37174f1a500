"""The model registry: which models have a name, where their weights are and what they are for."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUNDLED_DIR", "CLASSIFIERS", "MIRROR_ENV", "MODELS", "ModelInfo", "hub_mirror"]

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

MIRROR_ENV = "REPAINT_HUB_MIRROR_"


def hub_mirror(info: ModelInfo) -> str | None:
    """The Hub mirror of a converted registry model: ``REPAINT_HUB_MIRROR_<NAME>`` (e.g. REPAINT_HUB_MIRROR_PLACES2=
    owner/name; empty: none), else the entry's ``hub_mirror``."""
    value = os.environ.get(MIRROR_ENV + info.name.upper(), info.hub_mirror)
    return (value.strip() or None) if value else None
