"""Train a small unconditional DDPM (epsilon prediction) on 32x32 images.

    python -m repaint.train --data faces --out repaint/bundled --work runs/bundled

``--out`` receives only the EMA weights as a standard diffusers folder
(``config.json``, ``diffusion_pytorch_model.safetensors``,
``scheduler_config.json``). ``--work`` (default: ``--out``) receives the
resumable state ``train_state.pt``, the loss log ``loss.csv`` and sample grids.
Rerun with ``--resume`` (and a larger ``--steps``) to continue a run. ``--init MODEL`` fine-tunes an
existing diffusers UNet folder (its architecture, size and weights) instead of a new UNet, e.g.
``--init repaint/bundled --data my_images``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from PIL import Image
from tqdm import tqdm

from repaint.checkpoints import from_pretrained_whole
from repaint.faces import render_face, train_rng
from repaint.images import fit_image, open_image
from repaint.schedule import betas_from_config

STATE_FILE = "train_state.pt"


def make_scheduler() -> DDPMScheduler:
    """The 1000-step linear-beta (1e-4..0.02) DDPM schedule of Ho et al. / RePaint."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        variance_type="fixed_small",
        clip_sample=True,
        prediction_type="epsilon",
    )


def make_unet(
    size: int, channels: tuple[int, ...], layers_per_block: int = 1, attn_levels: tuple[int, ...] = ()
) -> UNet2DModel:
    """A small UNet; the mid block always has self-attention, ``attn_levels`` adds it to down/up levels."""
    down = tuple("AttnDownBlock2D" if i in attn_levels else "DownBlock2D" for i in range(len(channels)))
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    return UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        layers_per_block=layers_per_block,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=min(32, math.gcd(*channels)),
        attention_head_dim=8,
    )


def load_folder(path: Path, size: int) -> np.ndarray:
    """All images under ``path``, prepared as for inpainting (``repaint.images.fit_image``: upright, transparency
    over white, centre-cropped, Lanczos-resized): uint8 (N, size, size, 3). Other files are skipped."""
    imgs, skipped = [], 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        try:
            imgs.append(fit_image(open_image(f), size))
        except ValueError:  # not an image, or too large
            skipped += 1
    if not imgs:
        raise SystemExit(f"no readable images under {path}")
    if skipped:
        print(f"{len(imgs)} images loaded; skipped {skipped} files that are not readable images", file=sys.stderr)
    return np.stack(imgs)


def check_schedule(path: Path, ours: dict) -> None:
    """Refuse to fine-tune a model trained with another noise schedule or target than the scheduler config ``ours``."""
    file = path / "scheduler_config.json"
    if not file.exists():
        return
    theirs = json.loads(file.read_text())
    if theirs.get("prediction_type", "epsilon") != "epsilon" or not np.allclose(
        betas_from_config(theirs), betas_from_config(ours), rtol=1e-6, atol=0
    ):
        raise SystemExit(
            f"{path} was trained with another noise schedule or prediction type; this trainer uses "
            "the 1000-step linear-beta (1e-4..0.02) epsilon-prediction DDPM"
        )


def next_batch(rng: np.random.Generator, data: np.ndarray | None, n: int, size: int) -> torch.Tensor:
    """A batch in [-1, 1], NCHW: fresh procedural faces, or random flipped images from ``data``."""
    if data is None:
        x = np.stack([render_face(rng, size) for _ in range(n)])
    else:
        x = data[rng.integers(len(data), size=n)]
        flip = rng.random(n) < 0.5
        x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def sample_grid(unet: UNet2DModel, scheduler: DDPMScheduler, n: int, seed: int, scale: int = 4) -> Image.Image:
    """``n`` unconditional samples (plain 1000-step DDPM ancestral sampler) as a nearest-upscaled grid."""
    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    x = pipe(batch_size=n, generator=torch.Generator().manual_seed(seed), output_type="np").images
    return image_grid((x * 255).round().astype(np.uint8), scale)


def image_grid(x: np.ndarray, scale: int = 4) -> Image.Image:
    """uint8 (N, H, W, 3) -> square-ish grid image, upscaled ``scale`` times (nearest)."""
    n, h, w, _ = x.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    g = np.zeros((rows * cols, h, w, 3), np.uint8)
    g[:n] = x
    g = g.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    return Image.fromarray(g).resize((cols * w * scale, rows * h * scale), Image.Resampling.NEAREST)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m repaint.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="faces", help="'faces' (built-in procedural set) or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="diffusers folder for the EMA weights")
    p.add_argument("--work", type=Path, help=f"folder for {STATE_FILE}, loss.csv, samples (default: --out)")
    p.add_argument("--size", type=int, help="image size of a new model (default 32; else the model's own)")
    p.add_argument("--steps", type=int, default=6000, help="total optimiser steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", default="32,64,64", help="a new model's block_out_channels, one level per entry")
    p.add_argument("--layers-per-block", type=int, default=1, help="a new model's ResNet blocks per level")
    p.add_argument(
        "--attn-levels",
        default="",
        help="a new model's levels with attention, comma-separated (the mid block always has it)",
    )
    p.add_argument(
        "--init",
        type=Path,
        help="fine-tune this diffusers UNet folder (its architecture and weights) instead of a new UNet",
    )
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--samples", type=int, default=0, help="write a grid of this many samples at the end")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--resume", action="store_true", help=f"continue from WORK/{STATE_FILE}")
    p.add_argument(
        "--keep-state",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"keep WORK/{STATE_FILE} after the final step",
    )
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _initial_unet(a, scheduler_config, state: dict | None) -> UNet2DModel:
    """The UNet a run starts from: a saved state's architecture, ``--init``'s weights, or new seeded weights."""
    if state:
        return UNet2DModel.from_config(state["config"])
    if a.init:
        check_schedule(a.init, scheduler_config)
        return from_pretrained_whole(UNet2DModel, a.init)  # no random weights filled in
    channels = tuple(int(c) for c in a.channels.split(","))
    levels = tuple(int(c) for c in a.attn_levels.split(",") if c)
    with torch.random.fork_rng():  # seeded initial weights, global RNG left untouched
        torch.manual_seed(a.seed)
        return make_unet(a.size or 32, channels, a.layers_per_block, levels)


def _train_step(unet, opt, alphas, x0: torch.Tensor, gen: torch.Generator, lr: float) -> torch.Tensor:
    """One step of DDPM's simple loss (Ho et al. 2020, Algorithm 1): the noise predicted at a random timestep."""
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, len(alphas), (len(x0),), generator=gen)
    ab = alphas[t].view(-1, 1, 1, 1)
    loss = torch.nn.functional.mse_loss(unet(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t).sample, noise)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    return loss


@torch.no_grad()
def _ema_update(ema, unet, decay: float) -> None:
    for pe, p in zip(ema.parameters(), unet.parameters()):
        pe.lerp_(p, 1 - decay)


def _state(unet, ema, opt, gen: torch.Generator, rng, step: int) -> dict:
    """Everything a resumed run needs to continue exactly (weights, optimiser, both random generators, the step)."""
    return {
        "config": dict(unet.config),
        "unet": unet.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "torch_rng": gen.get_state(),
        "numpy_rng": rng.bit_generator.state,
        "step": step,
    }


def _resume(state: dict, unet, ema, opt, gen: torch.Generator, rng) -> int:
    """Puts a saved :func:`_state` back; returns its step."""
    unet.load_state_dict(state["unet"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    gen.set_state(state["torch_rng"])
    rng.bit_generator.state = state["numpy_rng"]
    return state["step"]


def _loss_log(log_path: Path, resumed_at: int | None) -> Path:
    """The loss log, started anew or, when resuming at step ``resumed_at``, without the rows logged after it."""
    fresh = resumed_at is None or not log_path.exists()
    rows = ["step,loss"] if fresh else log_path.read_text().splitlines()[: resumed_at + 1]
    log_path.write_text("".join(r + "\n" for r in rows))
    return log_path


def main(argv: list[str] | None = None) -> None:
    """Train (or resume), saving EMA weights to ``--out`` every ``--save-every`` steps and at the end."""
    a = parse_args(argv)
    work = a.work or a.out
    a.out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if a.threads:
        torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    scheduler = make_scheduler()

    state_path = work / STATE_FILE
    state = torch.load(state_path) if a.resume else None
    unet = _initial_unet(a, scheduler.config, state)
    size = unet.config.sample_size
    if a.size and a.size != size:
        raise SystemExit(f"--size {a.size} does not match the model's {size}")
    data = None if a.data == "faces" else load_folder(Path(a.data), size)
    rng = train_rng(a.seed) if data is None else np.random.default_rng(a.seed)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=a.lr, weight_decay=0.0)
    step = _resume(state, unet, ema, opt, gen, rng) if state else 0

    def save(final: bool) -> None:
        ema.save_pretrained(a.out)
        scheduler.save_pretrained(a.out)
        if a.keep_state or not final:
            torch.save(_state(unet, ema, opt, gen, rng, step), state_path)
        elif state_path.exists():
            state_path.unlink()

    alphas = scheduler.alphas_cumprod
    log_path = _loss_log(work / "loss.csv", step if state else None)
    with open(log_path, "a", newline="") as log_file:
        log = csv.writer(log_file, lineterminator="\n")
        bar = tqdm(total=a.steps, initial=step, file=sys.stderr, disable=a.no_progress, dynamic_ncols=True)
        unet.train()
        while step < a.steps:
            x0 = next_batch(rng, data, a.batch_size, size)
            lr = a.lr * min(1.0, (step + 1) / max(1, a.warmup))
            loss = _train_step(unet, opt, alphas, x0, gen, lr)
            step += 1
            _ema_update(ema, unet, min(a.ema_decay, (1 + step) / (10 + step)))
            log.writerow([step, f"{loss.item():.6f}"])
            bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update()
            if step % a.save_every == 0 and step < a.steps:
                log_file.flush()
                save(final=False)
        bar.close()
    save(final=True)
    if a.samples:
        ema.eval()
        sample_grid(ema, scheduler, a.samples, seed=0).save(work / "samples.png")


if __name__ == "__main__":
    main()
