"""Benchmark: the page's estimate against the wait it estimates, on this machine.

    python -m repaint.space.bench                                   # prints the table
    python -m repaint.space.bench --rounds 3 --write docs/benchmarks.md

A server as ``python app.py`` starts it (torch's threads set for a server, the model timed at start-up) runs four
page runs in turn on the bundled model: a small one, the paper's defaults, 4 samples, and a comparison; each is a
mask drawn on ``examples/face1.png`` (the photo's own size, as a drawn mask runs). For each run it prints the
estimate the page shows before the click, and the time the server took from the request to the result files, the
way the page's handler runs it (:func:`repaint.space.streams.page_stream`: the checks, the model calls, the
previews, the PNGs and the GIF). The browser's share (``PAGE_S``, sending the layers and showing the results) is part
of the estimate the page shows but not of this measured wait, so the ratio is taken on the server's part. Each
round measures the runs again on the estimates the earlier rounds left, as a page open for a while does."""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import Settings
from ..bench import _machine, machine_text, write_section
from ..images import open_image, to_rgb
from ..masks import center_box
from . import offer, streams
from .estimate import PAGE_S, fmt_seconds
from .service import Service

PAPER = Settings()  # the paper's T=250, j=10, r=10
RUNS = {
    "small": Settings(steps=20, jump_length=5, jump_n_sample=2),
    "paper default": PAPER,
    "batched": Settings(steps=50, jump_length=5, jump_n_sample=5, num_samples=4),
    "compare": Settings(steps=50, jump_length=5, jump_n_sample=5, num_samples=2, compare=True),
}
MODEL = "bundled"


def server(model: str = MODEL) -> Service:
    """A CPU or GPU server started as app.py starts one, with ``model`` loaded and timed."""
    has_gpu = torch.cuda.is_available()
    service = Service(has_gpu=has_gpu, offered=offer.offered_models(None, has_gpu, False))
    service.start(model, model, MODEL, "REPAINT_MODEL", PAPER, server=True)
    return service


def page_run(service: Service, model: str, image: np.ndarray, mask: np.ndarray, settings: Settings) -> float:
    """Seconds from the request to the page's result files, as the page's handler runs it."""
    start = time.perf_counter()
    req = service.page_request(image=image, mask=mask, model=model, settings=settings, invert=False, full_size=True)
    checked = service.check_request(req)
    with tempfile.TemporaryDirectory() as results_dir:
        events = streams.page_stream(service, service.runner.run, req, checked, None, Path(results_dir))
        try:
            for ev in events:
                if not isinstance(ev, streams.Status):
                    return time.perf_counter() - start
        finally:
            events.close()
    raise RuntimeError("the run ended without results")


def measure(service: Service, model: str, image: np.ndarray, rounds: int) -> list[dict]:
    """One row per run and round: the estimate shown, its server part, and the measured server time."""
    mask = center_box(*image.shape[:2])
    rows = []
    for round_ in range(1, rounds + 1):
        for name, settings in RUNS.items():
            shown = service.timing.wait_seconds(model, settings)
            wall = page_run(service, model, image, mask, settings)
            rows.append(dict(round=round_, run=name, settings=settings, shown=shown, server=shown - PAGE_S, wall=wall))
            print(f"round {round_}, {name}: estimate {shown:.1f} s, server {wall:.1f} s", file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| round | run | T, j, r | samples | compare | estimate shown | its server part | server time | time / part |",
        "|---:|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["settings"]
        lines.append(
            f"| {r['round']} | {r['run']} | {s.steps}, {s.jump_length}, {s.jump_n_sample} | {s.num_samples} | "
            f"{'yes' if s.compare else 'no'} | {fmt_seconds(r['shown'])} | {r['server']:.1f} s | {r['wall']:.1f} s | "
            f"{r['wall'] / r['server']:.2f} |"
        )
    ratios = [r["wall"] / r["server"] for r in rows]
    lines += [
        "",
        f"time / part over {len(rows)} runs: median {statistics.median(ratios):.2f}, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}. The estimate shown adds the browser's share, "
        f"{PAGE_S:g} s, which this in-process run does not include.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m repaint.space.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=MODEL, help=f"an offered model (default {MODEL})")
    p.add_argument("--image", default="examples/face1.png", help="the photo (default examples/face1.png)")
    p.add_argument("--rounds", type=int, default=1, help="times the four runs are measured, in turn (default 1)")
    p.add_argument("--write", metavar="MD", help="also (re)write this benchmark's section of a report")
    args = p.parse_args(argv)
    service = server(args.model)
    rows = measure(service, args.model, np.asarray(to_rgb(open_image(args.image))), args.rounds)
    table = markdown(rows)
    print(table)
    if args.write:
        command = shlex.join(["python", "-m", "repaint.space.bench", *(sys.argv[1:] if argv is None else argv)])
        machine = machine_text(_machine(service.cache.get_model(args.model)))
        write_section(args.write, f"The page's estimate against the wait: {args.model}", command, machine, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
