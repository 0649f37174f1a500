"""Which models the Space offers and how the page lists them: the registry's models by hardware, a setting's
list, Hub ids."""

from __future__ import annotations

import logging
import re

from .. import models

log = logging.getLogger(__name__)

# owner/name as the Hub spells it: letters, digits, '-', '_', '.'; no '..' or '--', no leading/trailing '.'/'-'
HUB_ID_RE = re.compile(
    r"(?!.*(\.\.|--))([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)/"
    r"([A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)"
)


def model_choices(has_gpu: bool, offered=None) -> list[tuple[str, str]]:
    """(label, name) for a chooser: name · resolution · what it is for · CPU/GPU; GPU-only models only with a GPU;
    only the ``offered`` names when given."""
    return [
        (
            f"{m.name} · {m.resolution}px · {m.description.split(';')[0].split(',')[0].split(' (')[0]} · "
            f"{'GPU' if m.gpu_only else 'CPU'}",
            m.name,
        )
        for m in models.MODELS.values()
        if (has_gpu or not m.gpu_only) and (offered is None or m.name in offered)
    ]


def offered_models(setting: str | None, has_gpu: bool, on_zerogpu: bool) -> list[str]:
    """The registry models a Space offers: ``setting`` (REPAINT_MODELS, comma-separated names) or, unset, every model
    the hardware can run; on ZeroGPU, unset, the models whose weights come from the Hub, and ``bundled`` (the paper's
    guided-diffusion models download 2.2 GB each from their authors' hosts: name them to offer them). A name the
    registry does not know is an error (a typo must not silently shrink the page)."""
    if setting and setting.strip():
        names = [n.strip() for n in setting.split(",") if n.strip()]
        unknown = [n for n in names if n not in models.MODELS]
        if unknown:
            raise ValueError(f"REPAINT_MODELS names unknown models {unknown}; known: {', '.join(models.MODELS)}")
        return list(dict.fromkeys(names))
    return [m.name for m in models.MODELS.values() if (has_gpu or not m.gpu_only) and not (on_zerogpu and m.url)]


def _weights(m: models.ModelInfo) -> str:
    if m.repo_id:
        return f"[{m.repo_id}](https://huggingface.co/{m.repo_id})"
    if m.url:
        return f"[{m.filename}]({m.source.split(' ')[0] if m.source else m.url}), {m.download_mb:,} MB, converted"
    return "in this package"


def model_table() -> str:
    """The registry as a Markdown table: name, resolution, purpose, licence, where the weights come from."""
    rows = [
        f"| {m.name} | {m.resolution} | {m.description} | {m.licence} | {_weights(m)} |" for m in models.MODELS.values()
    ]
    return "| model | px | for | licence | weights |\n|---|---|---|---|---|\n" + "\n".join(rows)


def is_hub_id(name) -> bool:
    """A well-formed Hub repository id ``owner/name`` (no paths, no '..'), not a registry name."""
    return isinstance(name, str) and name not in models.MODELS and HUB_ID_RE.fullmatch(name) is not None
