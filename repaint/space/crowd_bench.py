"""The crowd benchmark (issue 27): visitors at once against ``python app.py`` in a subprocess (bundled model, CPU),
through gradio_client, each visitor a client of its own:

    python -m repaint.space.crowd_bench --baseline DIR --write docs/benchmarks.md

- **eight visitors at once** with mixed settings (:data:`MIX`): the time until all eight are done, against the same
  eight runs one after another on the server of ``DIR`` (a checkout from before the crowd: one run at a time) and on
  this one; ``--rounds`` times (2), the cases in turn on new servers, since this machine's speed drifts by a tenth
  or more over minutes;
- **a T=20 run submitted 2 s after a paper-default run** (T=250, j=10, r=10) started: its click-to-result time
  against its time alone;
- the server's peak memory (VmHWM, reset before each case);
- the bundled model's cost per row of a batched call against a one-row call, at 1, 2, 4, 8 and 16 rows, on the
  threads the server gives torch (``service.leave_a_core_to_the_server``) and on all cores: the curve that decides
  what a crowd gains."""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from .hostile import Server
from .wire import FACE

#: (steps, jump_length, jump_n_sample, num_samples, compare): T from 20 to 250, r from 1 to 10, 1-4 samples, a Compare
MIX = [
    (250, 10, 10, 1, False),
    (20, 5, 1, 4, False),
    (50, 5, 5, 2, False),
    (100, 10, 5, 1, False),
    (250, 10, 2, 2, False),
    (150, 10, 4, 3, False),
    (50, 10, 10, 1, True),
    (30, 5, 3, 4, False),
]
PAPER = (250, 10, 10, 1, False)
SHORT = (20, 5, 1, 1, False)
ROWS = (1, 2, 4, 8, 16)

__all__ = ["MIX", "main", "per_row_costs"]


def _inpaint(client, run, seed: int = 0):
    from gradio_client import handle_file

    steps, jump, resample, samples, compare = run
    return client.submit(
        handle_file(str(FACE)),
        "left_half",
        api_name="/inpaint",
        model="bundled",
        steps=steps,
        jump_length=jump,
        jump_n_sample=resample,
        seed=seed,
        num_samples=samples,
        compare=compare,
    )


def clients(server: Server, n: int) -> list:
    from gradio_client import Client

    return [Client(server.url, verbose=False) for _ in range(n)]


def one_after_another(server: Server, runs) -> tuple[float, float]:
    """(seconds until all ``runs`` are done, one submitted when the last ended; the server's peak MB)."""
    (client,) = clients(server, 1)
    _inpaint(client, SHORT).result(timeout=600)  # warm: the model loaded and timed
    server.reset_peak()
    start = time.perf_counter()
    for i, run in enumerate(runs):
        _inpaint(client, run, seed=i).result(timeout=3600)
    return time.perf_counter() - start, server.peak()


def at_once(server: Server, runs) -> tuple[float, list[float], float]:
    """(seconds until all ``runs`` are done, submitted at once by clients of their own; each one's seconds; the
    server's peak MB)."""
    crowd = clients(server, len(runs))
    _inpaint(crowd[0], SHORT).result(timeout=600)
    server.reset_peak()
    start, done = time.perf_counter(), [0.0] * len(runs)
    jobs = [_inpaint(c, run, seed=i) for i, (c, run) in enumerate(zip(crowd, runs))]

    def wait(i):
        jobs[i].result(timeout=3600)
        done[i] = time.perf_counter() - start

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(done), done, server.peak()


def short_after_paper(server: Server) -> tuple[float, float, float]:
    """(the T=20 run's click-to-result seconds alone, then 2 s after a paper-default run started; the peak MB)."""
    long_client, short_client = clients(server, 2)
    _inpaint(short_client, SHORT).result(timeout=600)
    start = time.perf_counter()
    _inpaint(short_client, SHORT).result(timeout=600)
    alone = time.perf_counter() - start
    server.reset_peak()
    long_job = _inpaint(long_client, PAPER)
    while long_job.status().code.name not in ("PROCESSING", "ITERATING"):
        time.sleep(0.05)
    time.sleep(2)
    start = time.perf_counter()
    _inpaint(short_client, SHORT).result(timeout=3600)
    shared = time.perf_counter() - start
    long_job.result(timeout=3600)
    return alone, shared, server.peak()


def per_row_costs(threads: int, calls: int = 20) -> dict[int, float]:
    """The bundled model's seconds per row of a call of each of :data:`ROWS` rows, over a one-row call's
    (:func:`repaint.bench.call_times`: ``calls`` rounds of one call of each)."""
    import torch

    from .. import loading
    from ..bench import call_times

    torch.set_num_threads(threads)
    seconds = call_times(loading.load("bundled", device="cpu"), ROWS, repeats=calls, warmup=3)
    return {rows: seconds[rows] / rows / seconds[1] for rows in ROWS}


def busy_neighbour_costs(calls: int = 20, rows: int = 8) -> dict[str, float]:
    """Milliseconds of a call of the bundled model (``rows`` rows, the server's torch threads), alone and with a
    thread running Python beside it, at Python's default switch interval and at the server's
    (``service.SWITCH_INTERVAL_S``); each the median of ``calls`` calls (:func:`repaint.bench.call_time`)."""
    import sys

    from .. import loading
    from ..bench import call_time
    from .service import SWITCH_INTERVAL_S, leave_a_core_to_the_server

    leave_a_core_to_the_server(has_gpu=False)
    inp = loading.load("bundled", device="cpu")
    default, out = sys.getswitchinterval(), {"alone": call_time(inp, rows, calls) * 1000}
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            sum(range(1000))

    neighbour = threading.Thread(target=busy, daemon=True)
    neighbour.start()
    try:
        for label, interval in (
            (f"{default * 1000:g} ms", default),
            (f"{SWITCH_INTERVAL_S * 1000:g} ms", SWITCH_INTERVAL_S),
        ):
            sys.setswitchinterval(interval)
            out[f"a busy Python thread beside it, switch interval {label}"] = call_time(inp, rows, calls) * 1000
    finally:
        sys.setswitchinterval(default)
        stop.set()
        neighbour.join()
    return out


def _run_text(run) -> str:
    steps, jump, resample, samples, compare = run
    return f"T={steps}, j={jump}, r={resample}, {samples} sample{'s' if samples > 1 else ''}" + (
        ", Compare" if compare else ""
    )


def eight_visitors(baseline: Path | None, rounds: int) -> tuple[list, list, list, list, dict]:
    """``rounds`` rounds of :data:`MIX`, each on new servers: one after another on ``baseline``'s (if given) and on
    this one, then at once on this one. Lists of each case's seconds, each visitor's seconds at once, and the peaks."""
    before, seq, crowd, each = [], [], [], []
    peaks = {"before": [], "seq": [], "crowd": []}
    for _ in range(rounds):  # in turn, so that a slow spell of the machine slows each case alike
        if baseline:
            server = Server(baseline)
            try:
                seconds, peak = one_after_another(server, MIX)
            finally:
                server.close()
            before.append(seconds)
            peaks["before"].append(peak)
        server = Server()
        try:
            seconds, peak = one_after_another(server, MIX)
            seq.append(seconds)
            peaks["seq"].append(peak)
            seconds, times, peak = at_once(server, MIX)
            crowd.append(seconds)
            each.append(times)
            peaks["crowd"].append(peak)
        finally:
            server.close()
    return before, seq, crowd, each, peaks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Visitors at once against python app.py (see the module's doc).")
    p.add_argument("--baseline", metavar="DIR", help="a checkout of the code before the crowd, run one after another")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the eight visitors' cases, each on new servers")
    p.add_argument("--write", metavar="MD", help="also (re)write this benchmark's section of docs/benchmarks.md")
    args = p.parse_args(argv)
    before, seq, crowd, each, peaks = eight_visitors(Path(args.baseline) if args.baseline else None, args.rounds)
    server = Server()
    try:
        alone, shared, short_peak = short_after_paper(server)
    finally:
        server.close()
    rows = []
    if args.baseline:
        rows.append(
            ("8 visitors one after another, before the crowd (`--baseline`)", _times(before), _mb(peaks["before"]))
        )
    rows.append(("8 visitors one after another, this server", _times(seq), _mb(peaks["seq"])))
    base = before if args.baseline else seq
    ratios = ", ".join(f"{c / b:.2f}x" for c, b in zip(crowd, base))
    rows.append(("8 visitors at once, this server", f"{_times(crowd)} ({ratios})", _mb(peaks["crowd"])))
    rows.append(("a T=20 run alone, click to result", f"{alone:.1f} s", ""))
    rows.append(
        (
            "the same, 2 s after a paper-default run started",
            f"{shared:.1f} s ({shared / alone:.1f}x)",
            f"{short_peak:,.0f} MB",
        )
    )
    table = "| case | time until done | server's peak memory |\n|---|---:|---:|\n"
    table += "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    table += (
        "\nEach round is its own servers, the cases in the order above; the ratio is each round's at once over its\n"
    )
    table += "one after another. Each visitor's time at once, from the same click (each round):\n\n"
    table += "| visitor's run | seconds |\n|---|---:|\n"
    table += "".join(f"| {_run_text(run)} | {', '.join(f'{r[i]:.1f}' for r in each)} |\n" for i, run in enumerate(MIX))
    cores = os.cpu_count() or 1
    server_threads = max(1, cores - 1) if cores > 1 else 1
    curves = {threads: per_row_costs(threads) for threads in sorted({server_threads, cores})}
    table += "\nThe bundled model's cost per row of a call, against a one-row call (20 rounds of one call each):\n\n"
    table += "| torch threads | " + " | ".join(f"{r} rows" for r in ROWS) + " |\n|---|" + "---:|" * len(ROWS) + "\n"
    for threads, costs in curves.items():
        table += f"| {threads} | " + " | ".join(f"{costs[r]:.2f}" for r in ROWS) + " |\n"
    table += "\nA call of 8 rows, on the server's torch threads, with a thread running Python beside it:\n\n"
    table += "| case | ms per call |\n|---|---:|\n"
    table += "".join(f"| {case} | {ms:.0f} |\n" for case, ms in busy_neighbour_costs().items())
    print(table)
    if args.write:
        import torch

        from ..bench import _device_name, write_section

        command = "python -m repaint.space.crowd_bench --baseline DIR --write docs/benchmarks.md"
        machine = f"{_device_name(torch.device('cpu'))}, torch {torch.__version__}, a `python app.py` subprocess"
        if args.baseline:
            machine += f"; the baseline DIR at {_commit(Path(args.baseline))}"
        write_section(args.write, "A crowd on one machine: bundled", command, machine, table)
    return 0


def _times(seconds: list[float]) -> str:
    return ", ".join(f"{s:.1f} s" for s in seconds)


def _mb(peaks: list[float]) -> str:
    return ", ".join(f"{m:,.0f} MB" for m in peaks)


def _commit(root: Path) -> str:
    import subprocess

    out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h"], capture_output=True, text=True)
    return f"commit {out.stdout.strip()}" if out.returncode == 0 else str(root)


if __name__ == "__main__":
    raise SystemExit(main())
