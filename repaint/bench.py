"""Benchmark: this project's sampler against diffusers' RePaintPipeline (eta=1), and the bare model-call floor.

    python -m repaint.bench --model bundled
    python -m repaint.bench --config cifar10 --steps 50
    python -m repaint.bench --config celebahq --device cuda --dtype float16
    python -m repaint.bench --classifier imagenet256_classifier         # classifier guidance's cost and precision
    python -m repaint.bench --model bundled --write docs/benchmarks.md  # also (re)writes its section there

All runs share one UNet, input, mask, seeds and schedule, in one process. The floor is the
number of model calls times the median time of one UNet forward at that batch size.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import inspect
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
import types
import warnings

import numpy as np
import torch

from .loading import load
from .pipeline import Inpainter
from .registry import MODELS
from .sampler import classifier_grad
from .schedule import count_model_calls

_UNET_256 = dict(
    sample_size=256,
    block_out_channels=[128, 128, 256, 256, 512, 512],
    layers_per_block=2,
    down_block_types=["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4,
)
#: UNet architectures of the registry's Hub models (google/ddpm-*), for timing with random weights.
CONFIGS: dict[str, dict] = {
    "celebahq": _UNET_256,
    "church": _UNET_256,
    "bedroom": _UNET_256,
    "cat": _UNET_256,
    "cifar10": dict(
        sample_size=32,
        block_out_channels=[128, 256, 256, 256],
        layers_per_block=2,
        down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    ),
}
_COMMON = dict(
    in_channels=3,
    out_channels=3,
    act_fn="silu",
    attention_head_dim=None,
    center_input_sample=False,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    mid_block_scale_factor=1,
    norm_eps=1e-6,
    norm_num_groups=32,
    time_embedding_type="positional",
)
_DDPM = dict(
    num_train_timesteps=1000,
    beta_start=1e-4,
    beta_end=0.02,
    beta_schedule="linear",
    variance_type="fixed_small",
    clip_sample=True,
    prediction_type="epsilon",
)


def random_model(name: str, device, dtype) -> Inpainter:
    """A registry model's architecture with random weights: it times exactly like the real one."""
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's global RNG left untouched
        torch.manual_seed(0)
        unet = UNet2DModel(**_COMMON, **CONFIGS[name])
    unet = unet.to(device).eval().requires_grad_(False)
    if dtype != torch.float32:
        unet = unet.to(dtype=dtype)
    # google/ddpm-cifar10-32's scheduler config says fixed_large (issue 29 quotes it); the 256 px ones fixed_small
    sched = {**_DDPM, "variance_type": "fixed_large"} if name == "cifar10" else _DDPM
    return Inpainter(unet, sched, f"{name} (random weights)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def call_time(pipe: Inpainter, batch: int, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds of one sampler model call at ``batch`` (after ``warmup`` calls): see :func:`call_times`."""
    return call_times(pipe, (batch,), repeats, warmup)[batch]


@torch.inference_mode()
def call_times(pipe: Inpainter, batches, repeats: int = 20, warmup: int = 1, budget_s: float | None = None) -> dict:
    """{batch: seconds of one sampler model call}: the UNet forward, and for a model with a classifier the guidance
    gradient too (a guided run's default). The batches are timed in turn, one call of each a round: the first's
    seconds are its median, each other's the first's times the median of its ratio to the first in a round. A slow
    moment of the machine slows a round's calls alike, so the ratios hold: on a quiet 2-core machine, 1.5 s of rounds
    gave a 4-row call 2.5x-2.8x a 1-row one in eight tries; each batch timed apart, 1.7x-2.7x. ``warmup`` rounds
    first, then ``repeats`` rounds, or fewer once ``budget_s`` seconds are spent (at least three)."""
    inputs = {b: pipe.probe_inputs(b) for b in batches}

    def call(b):
        pipe.eps(*inputs[b])
        if pipe.classifier is not None:
            classifier_grad(pipe.classifier, *inputs[b], 1.0)

    for _ in range(warmup):
        for b in batches:
            call(b)
    rounds, start = [], time.perf_counter()
    while len(rounds) < repeats and (budget_s is None or len(rounds) < 3 or time.perf_counter() - start < budget_s):
        rounds.append({b: _timed(lambda: call(b), pipe.device) for b in batches})  # noqa: B023 - called at once
    first = statistics.median(r[batches[0]] for r in rounds)
    return {b: first * statistics.median(r[b] / r[batches[0]] for r in rounds) for b in batches}


def classifier_report(preset: str = "imagenet256_classifier", device="cpu", repeats: int = 3) -> dict:
    """Classifier guidance's cost and precision on a released classifier's architecture with random weights:
    parameters, TFLOP of forward + input gradient at batch 1 (FlopCounterMode), median seconds of one such call in
    float32 and in bfloat16, and the bfloat16 gradient's error against float32's (batch 2, three timesteps)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .classifier import build, classifier_config, classifier_options

    config = classifier_config(classifier_options(preset, {}))
    with torch.device("meta"):
        meta = build(config).requires_grad_(False)
        x = torch.zeros(1, 3, config["sample_size"], config["sample_size"], requires_grad=True)
        with FlopCounterMode(display=False) as counter:  # backward(): FlopCounterMode cannot follow autograd.grad
            torch.log_softmax(meta(x, torch.zeros(1, dtype=torch.long)), -1)[:, 0].sum().backward()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build(config).to(device).eval().requires_grad_(False)
        for name, prm in model.named_parameters():  # every layer random, like a trained one's scale
            prm.data = torch.randn_like(prm) * (prm[0].numel() ** -0.5 if prm.ndim > 1 else 0.1) + (
                1.0 if "norm" in name and name.endswith("weight") else 0.0
            )
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, config["sample_size"], config["sample_size"], generator=g).to(device)
    labels = torch.tensor([1, 500], device=device)
    report = dict(
        preset=preset,
        device=_device_name(torch.device(device)),
        threads=torch.get_num_threads(),
        params_M=sum(p.numel() for p in model.parameters()) / 1e6,
        tflop_fwd_bwd=counter.get_total_flops() / 1e12,
        seconds_per_call={},
        bf16_vs_fp32=[],
    )
    for dtype in (torch.float32, torch.bfloat16):
        m = model.to(dtype)
        one = (x[:1], torch.tensor([500], device=device), labels[:1])
        classifier_grad(m, *one, 1.0)  # warm-up
        report["seconds_per_call"][str(dtype).removeprefix("torch.")] = statistics.median(
            _timed(lambda m=m, one=one: classifier_grad(m, *one, 1.0), torch.device(device)) for _ in range(repeats)
        )
    for t in (999, 500, 50):
        tt = torch.full((2,), t, device=device)
        ref = classifier_grad(model.to(torch.float32), x, tt, labels, 1.0)
        low = classifier_grad(model.to(torch.bfloat16), x, tt, labels, 1.0)
        report["bf16_vs_fp32"].append(
            dict(
                t=t,
                rel_l2=float((low - ref).norm() / ref.norm()),
                cosine=float(torch.nn.functional.cosine_similarity(low.flatten(), ref.flatten(), dim=0)),
            )
        )
    model.to(torch.float32)
    return report


def diffusers_repaint(
    pipe: Inpainter,
    images: np.ndarray,
    fills: np.ndarray,
    steps: int,
    jump_length: int,
    jump_n_sample: int,
    seeds: list[int],
    eta: float = 1.0,
) -> np.ndarray:
    """The peer: diffusers' RePaintPipeline on the same UNet, uint8 (B, R, R, 3) images and bool (B, R, R) fill
    masks, one generator per sample; returns uint8 (B, R, R, 3)."""
    from diffusers import RePaintPipeline, RePaintScheduler

    dev = pipe.device
    known = set(inspect.signature(RePaintScheduler.__init__).parameters)
    config = {k: v for k, v in pipe.scheduler_config.items() if k in known}
    peer = RePaintPipeline(unet=pipe.unet, scheduler=RePaintScheduler.from_config(config))
    peer.set_progress_bar_config(disable=True)
    img = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    keep = torch.from_numpy(~fills)[:, None].float()  # diffusers: 1 = keep
    gens = [torch.Generator(dev).manual_seed(s) for s in seeds]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The preprocess method is deprecated", category=FutureWarning)
        out = peer(
            img.to(dev, pipe.dtype),
            keep.to(dev, pipe.dtype),
            num_inference_steps=steps,
            eta=eta,
            jump_length=jump_length,
            jump_n_sample=jump_n_sample,
            generator=gens,
            output_type="np",
        ).images
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


class _Zeros(torch.nn.Module):
    """A stand-in for a UNet that returns zeros of its output's shape at once: a run with it times the sampler's own
    work (the steps, the merges, the noise draws), without the model."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.config = unet.config
        p = next(unet.parameters())
        self.anchor = torch.nn.Parameter(torch.zeros((), device=p.device, dtype=p.dtype))  # the device and dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels=None):
        shape = (len(x), self.config.out_channels, *x.shape[2:])
        return types.SimpleNamespace(sample=torch.zeros(shape, device=x.device, dtype=x.dtype))


def sampler_seconds(pipe: Inpainter, image: np.ndarray, mask: np.ndarray, **kw) -> float:
    """Seconds of ``pipe.inpaint(image, mask, **kw)`` with the model replaced by one that returns zeros: the
    sampler's own part of a run."""
    zeros = Inpainter(_Zeros(pipe.unet), pipe.scheduler_config, pipe.name)
    return _timed(lambda: zeros.inpaint(image, mask, **kw), pipe.device)


def run(
    pipe: Inpainter,
    steps: int,
    jump_length: int,
    jump_n_sample: int,
    batch: int = 1,
    diffusers: bool = True,
    repeats: int = 20,
) -> dict:
    """Time the samplers; returns a JSON-able report."""
    rng = np.random.default_rng(0)
    image = (rng.random((pipe.resolution, pipe.resolution, 3)) * 255).astype(np.uint8)
    mask = pipe.prepare(image, "left_half")[1]
    calls = count_model_calls(steps, jump_length, jump_n_sample)
    plain_calls = count_model_calls(steps, jump_length, 1)
    t_b, t_2b = call_times(pipe, (batch, 2 * batch), repeats, warmup=3).values()
    kw = dict(steps=steps, jump_length=jump_length, jump_n_sample=jump_n_sample, seed=0, num_samples=batch)
    rows = [
        dict(name="model calls only (floor)", calls=calls, batch=batch, wall_s=calls * t_b, floor_s=calls * t_b),
        dict(
            name="repaint (this project)",
            calls=calls,
            batch=batch,
            floor_s=calls * t_b,
            wall_s=_timed(lambda: pipe.inpaint(image, mask, **kw), pipe.device),
        ),
        dict(
            name="repaint compare n=1 + n>1",
            calls=calls,
            batch=f"{batch}/{2 * batch}",
            floor_s=(calls - plain_calls) * t_b + plain_calls * t_2b,
            wall_s=_timed(lambda: pipe.compare(image, mask, **kw), pipe.device),
        ),
    ]
    if diffusers:
        images, masks_ = np.stack([image] * batch), np.stack([mask] * batch)
        seeds = list(range(batch))
        wall = _timed(
            functools.partial(diffusers_repaint, pipe, images, masks_, steps, jump_length, jump_n_sample, seeds),
            pipe.device,
        )
        rows.append(
            dict(name="diffusers RePaintPipeline eta=1", calls=calls, batch=batch, floor_s=calls * t_b, wall_s=wall)
        )
    peer = rows[-1]["wall_s"] if diffusers else None
    for row in rows:
        row["ms_per_call"] = 1000 * row["wall_s"] / row["calls"]
        row["overhead_pct"] = 100 * (row["wall_s"] / row["floor_s"] - 1)
        row["vs_diffusers"] = row["wall_s"] / peer if peer else None
    settings = dict(steps=steps, jump_length=jump_length, jump_n_sample=jump_n_sample, batch=batch)
    sampler_ms = 1000 * sampler_seconds(pipe, image, mask, **kw) / calls
    call_ms = {str(batch): 1000 * t_b, str(2 * batch): 1000 * t_2b}
    return _machine(pipe) | settings | dict(call_ms=call_ms, sampler_ms=sampler_ms, rows=rows)


def _machine(pipe: Inpainter) -> dict:
    """The model and where it ran, for a report."""
    return dict(
        model=pipe.name,
        resolution=pipe.resolution,
        params_M=sum(p.numel() for p in pipe.unet.parameters()) / 1e6,
        device=_device_name(pipe.device),
        dtype=str(pipe.dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"cpu ({model}, {os.cpu_count()} cores)"


REPORT_HEAD = """# Benchmarks

Every section below is written by the command it names, run with `--write docs/benchmarks.md`, which replaces that
section and leaves the others. Do not edit the figures by hand: run the command again. Other documents point here.
"""


def write_section(path: str, title: str, command: str, machine: str, body: str) -> None:
    """(Re)write the ``## title`` section of the generated report at ``path``: when, where and with which command
    it was measured, then ``body``. The other sections are kept; a new title is added at the end."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## {title}\n\nMeasured {when} on {machine}, with:\n\n    {command}\n\n{body.strip()}\n"
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = REPORT_HEAD
    head, *sections = re.split(r"^(?=## )", text, flags=re.M)
    titles = [s.split("\n", 1)[0][3:].strip() for s in sections]
    if title in titles:
        sections[titles.index(title)] = section
    else:
        sections.append(section)
    with open(path, "w") as f:
        f.write(head.rstrip("\n") + "\n\n" + "\n".join(s.rstrip("\n") + "\n" for s in sections))


def machine_text(report: dict) -> str:
    """Where a report was measured, in words (from :func:`_machine`'s fields)."""
    r = report
    return f"{r['device']}, {r['dtype']}, {r['threads']} torch threads, torch {r['torch']}"


def markdown(report: dict) -> str:
    """The report as a Markdown table with a one-line header, ready to paste into an issue."""
    r = report
    head = (
        f"**{r['model']}** ({r['resolution']}x{r['resolution']}, {r['params_M']:.1f}M params) on {r['device']}, "
        f"{r['dtype']}, {r['threads']} threads, torch {r['torch']}; T={r['steps']}, j={r['jump_length']}, "
        f"r={r['jump_n_sample']}, batch {r['batch']}; one call: "
        + ", ".join(f"{v:.2f} ms at batch {k}" for k, v in r["call_ms"].items())
    )
    lines = [
        head,
        "",
        "| run | model calls | batch | wall (s) | ms / call | over floor | vs diffusers |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        ratio = f"{row['vs_diffusers']:.2f}x" if row["vs_diffusers"] else "-"
        lines.append(
            f"| {row['name']} | {row['calls']} | {row['batch']} | {row['wall_s']:.2f} | "
            f"{row['ms_per_call']:.2f} | {row['overhead_pct']:+.1f}% | {ratio} |"
        )
    lines += [
        "",
        f"The sampler's own work: {r['sampler_ms']:.3f} ms per model call (this project's run with a stand-in model "
        "that returns zeros).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m repaint.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help=f"registry name ({', '.join(MODELS)}) or folder (default bundled)")
    src.add_argument("--config", choices=list(CONFIGS), help="a registry model's architecture with random weights")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--jump-length", type=int, default=10)
    p.add_argument("--jump-n-sample", type=int, default=10)
    p.add_argument("--batch", type=int, default=1, help="samples per run (num_samples)")
    p.add_argument("--repeats", type=int, default=20, help="forward calls timed for the floor's median")
    p.add_argument("--no-diffusers", action="store_true", help="skip diffusers' RePaintPipeline")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--write", metavar="MD", help="also (re)write this run's section of a report (docs/benchmarks.md)")
    p.add_argument(
        "--classifier",
        metavar="PRESET",
        help="instead: classifier guidance's cost (forward + input "
        "gradient) and bfloat16 precision on this classifier preset's architecture, random weights",
    )
    args = p.parse_args(argv)
    if args.classifier:
        print(json.dumps(classifier_report(args.classifier, args.device, min(args.repeats, 5)), indent=2))
        return 0
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    pipe = random_model(args.config, device, dtype) if args.config else load(args.model or "bundled", device, dtype)
    report = run(
        pipe, args.steps, args.jump_length, args.jump_n_sample, args.batch, not args.no_diffusers, args.repeats
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(markdown(report))
    if args.write:
        title = f"Sampler speed: {report['model']}, T={args.steps}, j={args.jump_length}, r={args.jump_n_sample}"
        command = shlex.join(["python", "-m", "repaint.bench", *(sys.argv[1:] if argv is None else argv)])
        write_section(args.write, title, command, machine_text(report), markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
