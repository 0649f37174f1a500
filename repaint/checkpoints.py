"""What converting a guided-diffusion (ADM) checkpoint takes, for the UNet (:mod:`repaint.convert`) and the
classifier (:mod:`repaint.classifier`) alike: reading the checkpoint safely, mapping ADM's module names and fused
attention onto diffusers', and writing the folder atomically."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

__all__ = [
    "IncompleteWeights",
    "UnsupportedArchitecture",
    "attention_levels",
    "from_pretrained_whole",
    "preset_of",
    "read_checkpoint",
    "rename_blocks",
    "resnet_keys",
    "split_qkv",
    "write_folder",
]


class UnsupportedArchitecture(ValueError):
    """The checkpoint's architecture has no exact diffusers ``UNet2DModel`` equivalent."""


class IncompleteWeights(ValueError):
    """A weights file that does not fill every parameter of its config's model."""


def from_pretrained_whole(cls, folder, **kwargs):
    """``cls.from_pretrained(folder, **kwargs)``, refused unless the weights file fills every parameter with a
    tensor of its shape. diffusers otherwise fills missing weights with random ones (and warns): a 100-byte file
    beside a config of a billion parameters would load, and run as noise."""
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kwargs)
    missing, mismatched = info.get("missing_keys") or [], info.get("mismatched_keys") or []
    if missing or mismatched:
        what = f"{len(missing)} missing" if missing else f"{len(mismatched)} of the wrong shape"
        raise IncompleteWeights(f"its weights do not cover its config: {what} of {len(model.state_dict())} tensors")
    return model


def attention_levels(o: dict, n_levels: int) -> list[bool]:
    """Which levels attend: resolution r attends at downsampling rate image_size // r (create_model)."""
    res = o["attention_resolutions"]
    res = [int(r) for r in (res.split(",") if isinstance(res, str) else res)]
    rates = {o["image_size"] // r for r in res}
    return [2**level in rates for level in range(n_levels)]


def resnet_keys(src: str, dst: str) -> dict[str, str]:
    names = {
        "in_layers.0": "norm1",
        "in_layers.2": "conv1",
        "emb_layers.1": "time_emb_proj",
        "out_layers.0": "norm2",
        "out_layers.3": "conv2",
        "skip_connection": "conv_shortcut",
    }
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in names.items()}


def split_qkv(w: torch.Tensor, heads: int, legacy: bool) -> tuple[torch.Tensor, ...]:
    """q, k, v of a fused 1x1 qkv conv. Legacy order (QKVAttentionLegacy) lays it out per head as (q, k, v);
    the new order (QKVAttention) as q, k, v, each of all heads. Both give heads-major q/k/v rows, as diffusers."""
    c3 = w.shape[0]
    rest = w.shape[1:]
    if legacy:
        w = w.reshape(heads, 3, c3 // 3 // heads, *rest).transpose(0, 1)
    else:
        w = w.reshape(3, heads, c3 // 3 // heads, *rest)
    return tuple(part.reshape(c3 // 3, *rest) for part in w)


def rename_blocks(
    state: dict[str, torch.Tensor],
    prefixes: dict[str, str],
    attn_blocks: list[tuple[str, str]],
    head_dim: int,
    legacy: bool,
) -> tuple[dict[str, torch.Tensor], set[str]]:
    """ADM tensors renamed by module prefix, and ADM attention blocks as diffusers ``Attention`` (q, k, v, out):
    ``(renamed, keys used)``."""
    out: dict[str, torch.Tensor] = {}
    used = set()
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in prefixes:
            out[f"{prefixes[prefix]}.{leaf}"] = value
            used.add(key)
    for src, dst in attn_blocks:
        if f"{src}.qkv.weight" not in state:
            raise ValueError(f"checkpoint does not match the given options: no attention block {src}")
        heads = state[f"{src}.norm.weight"].shape[0] // head_dim
        for leaf in ("weight", "bias"):
            out[f"{dst}.group_norm.{leaf}"] = state[f"{src}.norm.{leaf}"]
            qkv = state[f"{src}.qkv.{leaf}"]
            qkv = qkv[..., 0] if leaf == "weight" else qkv  # Conv1d (3C, C, 1) -> Linear (3C, C)
            for name, part in zip(("to_q", "to_k", "to_v"), split_qkv(qkv, heads, legacy)):
                out[f"{dst}.{name}.{leaf}"] = part
            proj = state[f"{src}.proj_out.{leaf}"]
            out[f"{dst}.to_out.0.{leaf}"] = proj[..., 0] if leaf == "weight" else proj
            used |= {f"{src}.{p}.{leaf}" for p in ("norm", "qkv", "proj_out")}
    return out, used


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code is ever run
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path.name} is not a state dict of tensors")
    return state


def preset_of(checkpoint: Path, preset: str | None, options: dict, files: dict[str, str], refusal: str) -> str | None:
    """The preset of a conversion: the one given, else (no options either) the one of the checkpoint's known file
    name in ``files``; a ValueError "NAME is not a known ``refusal``" for an unknown name."""
    if preset is None and not options:
        preset = files.get(checkpoint.name)
        if preset is None:
            raise ValueError(f"{checkpoint.name} is not a known {refusal}")
    return preset


def write_folder(out_dir: Path, model, files: dict[str, dict]) -> Path:
    """``model.save_pretrained`` (safetensors) and the JSON ``files`` into ``out_dir``, atomically: written in a
    temporary folder beside it, which then replaces it. Returns ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        for name, value in files.items():
            (tmp / name).write_text(json.dumps(value, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
