"""A converted folder checked against its checkpoint, given a model card and uploaded to the Hugging Face Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .adm import DEFAULTS, SOURCES, convert_state_dict
from .checkpoints import read_checkpoint

__all__ = ["check_conversion", "model_card", "push_to_hub"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def check_conversion(checkpoint: str | Path, folder: str | Path) -> dict:
    """Check a written folder against its checkpoint, bit for bit: the folder's weights are exactly the checkpoint's
    tensors renamed and reshaped (:func:`convert_state_dict` with the folder's ``adm_options.json``), no tensor is
    missing or extra, and they hold as many values as the checkpoint. Returns what was checked (for the model
    card); raises ValueError on any difference."""
    from safetensors.torch import load_file

    checkpoint, folder = Path(checkpoint), Path(folder)
    o = json.loads((folder / "adm_options.json").read_text())
    o = {k: o[k] for k in DEFAULTS}
    state = read_checkpoint(checkpoint)
    want = convert_state_dict(state, o)
    got = load_file(folder / "diffusion_pytorch_model.safetensors")
    if set(got) != set(want):
        raise ValueError(f"the folder's tensors differ from the checkpoint's: {sorted(set(got) ^ set(want))[:3]}")
    unequal = [k for k in want if not (got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]))]
    if unequal:
        raise ValueError(f"{len(unequal)} tensors differ from the checkpoint's, e.g. {unequal[:3]}")
    values = sum(v.numel() for v in state.values())
    if values != sum(v.numel() for v in got.values()):
        raise ValueError("the folder holds a different number of values than the checkpoint")
    return dict(
        checkpoint=checkpoint.name,
        sha256=_sha256(checkpoint),
        tensors=len(got),
        source_tensors=len(state),
        values=values,
        dtypes=sorted({str(v.dtype).removeprefix("torch.") for v in got.values()}),
    )


def _released_licence(checkpoint: str) -> tuple[str, str, str]:
    """(name, Hub licence id, source) of a released checkpoint (:data:`SOURCES`); a ValueError for another file."""
    if checkpoint not in SOURCES:
        raise ValueError(
            f"{checkpoint} is not a released checkpoint ({', '.join(SOURCES)}): give its licence and source "
            "(--license, --source)"
        )
    return SOURCES[checkpoint]


def _card_header(licence_id: str) -> str:
    """The model card's Hugging Face metadata."""
    tags = ["diffusers", "unconditional-image-generation", "guided-diffusion", "repaint", "inpainting"]
    lines = [f"license: {licence_id}", "library_name: diffusers", "pipeline_tag: unconditional-image-generation"]
    return "\n".join(["---", *lines, "tags:", *(f"  - {t}" for t in tags), "---"])


def model_card(
    folder: str | Path, check: dict, *, licence: tuple[str, str, str] | None = None, repo_id: str | None = None
) -> str:
    """The Hub model card (README.md with Hugging Face metadata) of a converted folder: where the weights come from,
    their licence (``licence``: (name, Hub licence id, source); default: :data:`SOURCES` by file name), the
    conversion options and the check of :func:`check_conversion`."""
    folder = Path(folder)
    o = json.loads((folder / "adm_options.json").read_text())
    name, licence_id, source = licence or _released_licence(check["checkpoint"])
    sched = json.loads((folder / "scheduler_config.json").read_text())
    options = {k: o[k] for k in DEFAULTS if o.get(k) != DEFAULTS[k]}
    flags = " ".join(f"--{k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items())
    preset = f"--preset {o['preset']}" if o.get("preset") else flags
    use = repo_id or "OWNER/NAME"
    meta = _card_header(licence_id)
    return f"""{meta}

# {check["checkpoint"]} as a diffusers `UNet2DModel`

An exact conversion of the guided-diffusion (ADM) checkpoint **{check["checkpoint"]}** into a diffusers folder
(`UNet2DModel` config, safetensors weights, `DDPMScheduler` config with `variance_type: {sched["variance_type"]}`),
made by `repaint.convert` of the RePaint Space project for RePaint inpainting (Lugmayr et al., CVPR 2022,
arXiv 2201.09865). It changes names and shapes only: no weight is retrained, rounded or cast.

## Source and licence

- Weights: {source}.
- Licence: **{name}**, as its source publishes it; this copy keeps it. Use it under the source's terms.
- Source file: `{check["checkpoint"]}`, SHA-256 `{check["sha256"]}`.

## Conversion

```
python -m repaint.convert {check["checkpoint"]} OUT {preset}
```

guided-diffusion options (those differing from its defaults): `{json.dumps(options)}`.
All options, as read by the converter: `adm_options.json` in this folder.

## Exactness check

- Done at conversion time (`repaint.convert.check_conversion`): the {check["tensors"]} tensors written here are,
  bit for bit, the checkpoint's {check["source_tensors"]} tensors renamed and reshaped ({check["values"]:,} values on
  both sides, dtype {", ".join(check["dtypes"])}); nothing is missing, left over or altered.
- The renaming itself is tested against OpenAI's `guided_diffusion` UNet (the project's `tests/test_adm.py`):
  with random weights, the converted model's outputs equal guided-diffusion's to 1e-5, at the released 256x256
  architecture too.

## Use

```python
import repaint
pipe = repaint.load("{use}")  # or, as a registry model's mirror: REPAINT_HUB_MIRROR_<NAME>={use}
```
"""


def push_to_hub(
    folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None, endpoint: str | None = None
) -> str:
    """Upload a converted folder (with its model card) to the Hub repository ``repo_id``, created if needed;
    returns the commit's URL. ``endpoint``: another Hub server (default: ``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=f"Upload {Path(folder).name} converted by repaint.convert",
    )
    return str(getattr(info, "commit_url", info))
