"""The Space on ZeroGPU, emulated through the real ``spaces`` package (tests/_zerogpu.py says what is replaced:
the device API by a loopback HTTP stand-in, the worker's CUDA device by the CPU, and two CUDA-only attributes of a
CPU build of torch). Everything else is spaces' own: the thread-local CUDA emulation of the main process, packing at
launch, the forked worker reused across calls, pickling, the stop event, the wrapping of errors.

One server process serves app.py so emulated (``server``): models ``cat`` (the default) and ``cifar10`` from a
Hugging Face Hub cache this module writes (those repositories' real file lists, tests/_hub_repos.py, with the
bundled model's weights: the weights do not matter here, the loading path does), and ``bundled``. The page's own
handler is driven through Gradio's queue over HTTP, as the browser does; ``/inpaint`` through gradio_client.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from _hub_repos import ddpm_repo, write_hub_cache
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import repaint
from repaint import space
from repaint.space import aot
from repaint.space.wire import FACE, Page

pytestmark = pytest.mark.zerogpu
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """app.py on emulated ZeroGPU in a process of its own: (page url, device API url, call log path)."""
    tmp = tmp_path_factory.mktemp("zerogpu")
    for name in ("cat", "cifar10"):
        repo_id = repaint.MODELS[name].repo_id  # the repository's real files, with the bundled model's weights
        write_hub_cache(tmp / "hf" / "hub", repo_id, ddpm_repo(repo_id, weights_from=repaint.models.BUNDLED_DIR))
    with serve(
        tmp, REPAINT_MODELS="cat,cifar10,bundled", REPAINT_MODEL="cat", REPAINT_TEST_FAULT_FILE=str(tmp / "fault")
    ) as urls:
        yield urls


@contextlib.contextmanager
def serve(tmp: Path, expect_models: str | None = None, **settings: str):
    """Starts tests/_zerogpu.py with ``settings`` in its environment; yields (page url, device API url, call log
    path) once it is ready with ``expect_models`` loaded (default: REPAINT_MODELS), and stops it after."""
    log = tmp / "calls.log"
    env = {
        **os.environ,
        "HF_HOME": str(tmp / "hf"),
        "ZEROGPU_OFFLOAD_DIR": str(tmp / "offload"),
        "REPAINT_TEST_CALL_LOG": str(log),
        "OMP_NUM_THREADS": "1",
        **settings,
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "_zerogpu.py"), "0"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, ready = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while not ready.wait(1) and proc.poll() is None and time.monotonic() < deadline:
            pass
        assert ready.is_set(), "".join(lines[-50:])
        page, api = next(line for line in lines if line.startswith("READY")).split()[1:]
        models = expect_models or settings["REPAINT_MODELS"]
        assert f"ZEROGPU True MODELS {models}\n" in lines, "".join(lines[-50:])
        yield page, api, log
    finally:
        proc.terminate()
        proc.wait(30)


def device_calls(api: str) -> list[tuple[str, dict]]:
    return [tuple(c) for c in httpx.get(api + "test-calls").json()]


def outcome(messages: list[dict]) -> tuple[bool, list]:
    last = messages[-1]
    return last["success"], last["output"].get("data") or [last["output"].get("error")]


@pytest.mark.parametrize("model", ["bundled", "cifar10"])
def test_non_default_models_run_through_the_page_and_the_api(server, model):
    """Finding 1: a model other than the default, loaded lazily in a handler thread, failed on ZeroGPU ("Could not
    load model ... (AssertionError)"): each offered model is on cuda before launch and runs in the worker."""
    page_url, api, _ = server
    ok, out = outcome(Page(page_url).inpaint(model, 10, 5, 2))
    assert ok and out[0].startswith("Done") and f"{model}, seed 0" in out[0], out
    assert out[2] and len(out[2]) == 1  # the gallery: one result
    (result,) = Client(page_url, verbose=False).predict(
        handle_file(str(FACE)), "left_half", model, 10, 5, 2, 3, 1, False, api_name="/inpaint"
    )
    res = np.asarray(Image.open(result["image"]).convert("RGB"))
    inp = repaint.load("bundled", device="cpu")  # the same weights, here in this process
    rgb, _ = inp.prepare(str(FACE), "left_half")
    known = ~repaint.masks.PRESETS["left_half"](32, 32, 0)
    assert res.shape == (32, 32, 3) and (res[known] == rgb[known]).all()
    assert any(path == "/allow" for path, _ in device_calls(api))  # a worker took the GPU


def test_stop_ends_the_workers_run_within_one_model_call(server):
    """Finding 2: Stop set a flag the forked worker never saw. Now the main process closes the GPU function's
    generator, spaces sets the worker's stop event, and the worker, which yields at every model call, stops at its
    next one. The call log has "call" from the worker and "stop" when spaces set the stop event."""
    page_url, _, log = server
    page = Page(page_url)
    log.write_text("")
    messages = []
    runner = threading.Thread(target=lambda: messages.extend(page.inpaint("bundled", 100, 10, 5)))
    runner.start()
    deadline = time.monotonic() + 120
    while log.read_text().count("call") < 30 and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().count("call") >= 30, messages
    assert page.predict(page.fn("stop", "click"), []) == [space.STOPPING]
    runner.join(120)
    time.sleep(1.0)  # a worker that did not stop would go on calling the model
    words = log.read_text().split()
    assert "stop" in words, words[-20:]
    after = words[words.index("stop") + 1 :]
    assert after.count("call") <= 1, after  # the call in flight when the stop event was set, no more
    assert words.count("call") < repaint.count_model_calls(100, 10, 5)
    ok, out = outcome(messages)
    assert ok and out[0].startswith("Stopped as you asked"), out  # a Stop is not an error (issue 21)


def test_a_stop_while_waiting_for_a_gpu_leaves_the_visitors_later_runs_alone(server):
    """Issue 25: visitor A presses Stop while the run waits in ZeroGPU's queue; spaces then forks a new worker (the
    GPU was not idle) while A's Stop flag is set in the main process. The worker's forked copy of the flag table
    stopped every later run of A's ("Stopped."). A's next two runs, with no Stop, finish."""
    page_url, api, _ = server
    page = Page(page_url)
    httpx.get(api + "test-next", params={"wait_s": 4})
    before = len(device_calls(api))
    messages = []
    runner = threading.Thread(target=lambda: messages.extend(page.inpaint("bundled", 10, 5, 2)))
    runner.start()
    deadline = time.monotonic() + 60

    def queued() -> bool:
        return any(path == "queued" for path, _ in device_calls(api)[before:])

    while not queued() and time.monotonic() < deadline:
        time.sleep(0.1)  # until the run has asked for its GPU and waits in the queue
    assert queued()
    assert page.predict(page.fn("stop", "click"), []) == [space.STOPPING]
    runner.join(60)
    ok, out = outcome(messages)
    assert ok and out[0].startswith("Stopped as you asked"), out
    for _ in range(2):
        ok, out = outcome(page.inpaint("bundled", 10, 5, 2))
        assert ok and out[0].startswith("Done"), out


def test_an_error_inside_the_gpu_function_keeps_its_message(server):
    """Finding 3: a ServeError raised in the worker reached the visitor as the bare word "ServeError". The app's
    GPU function raises gr.Error, which spaces hands on with its message: the sampler's own words, verbatim."""
    page_url, _, _ = server
    client = Client(page_url, verbose=False)
    with pytest.raises(ValueError) as want:  # what the sampler says of these settings, asked here
        repaint.load("bundled", device="cpu").check(repaint.Settings(steps=5, jump_length=9, jump_n_sample=1))
    settings = dict(model="bundled", image=str(FACE), mask="left_half", steps=5, jump_length=9, jump_n_sample=1)
    with pytest.raises(AppError) as got:
        client.predict(settings, api_name="/test_gpu_run")
    assert str(want.value) in str(got.value) and "ZeroGPU worker error" not in str(got.value)
    assert client.predict({**settings, "jump_length": 5, "steps": 10}, api_name="/test_gpu_run") > 10
    with pytest.raises(AppError, match="jump_length"):  # /inpaint checks it before a GPU is asked for
        client.predict(handle_file(str(FACE)), "left_half", "bundled", 5, 9, 1, 0, 1, False, api_name="/inpaint")


@pytest.mark.parametrize("kind,message", [("oom", space.OUT_OF_MEMORY), ("cuda", space.GPU_FAILED)])
def test_a_gpu_error_in_the_worker_reaches_the_visitor_as_words(server, kind, message):
    """Issue 25: an out-of-memory or CUDA error inside the GPU function reached the visitor as its class name
    ("ZeroGPU worker error"). Raised by the worker's 5th model call, it arrives as a message saying what to do."""
    page_url, _, log = server
    (log.parent / "fault").write_text(f"5 {kind}")
    ok, out = outcome(Page(page_url).inpaint("bundled", 10, 5, 2))
    assert not ok and out == [message], out
    assert not (log.parent / "fault").exists()  # the 5th call raised it


def test_defaults_fit_the_default_slot_and_the_paper_is_one_click_away(server):
    """Finding 5: the paper's settings on the default model asked more than ZeroGPU's 60 s default slot (and, on
    an ADM model, more than an anonymous or free visitor's day). The page's defaults are charged at most the slot's
    60 s; "Paper settings" sets T=250, j=10, r=10; the estimate says what a run is charged and which quotas pay.
    Issue 29: the charged seconds are what spaces sends to /schedule, the request's seconds times the GPU's duration
    factor (1.5 on the emulated RTX PRO 6000), not the bare seconds."""
    page_url, api, _ = server
    page = Page(page_url)
    defaults = tuple(page.value(e) for e in ("steps", "jump", "resample"))
    svc = space.Service(on_zerogpu=True, duration_factor=1.5)  # the server's guess (nothing measured yet)
    fit = svc.slot.fitting_settings("cat", space.ZEROGPU_SLOT_S)
    assert defaults == (fit.steps, fit.jump_length, fit.jump_n_sample) != (250, 10, 10)
    assert (
        svc.slot.charged_seconds(
            space.Request(model="cat", settings=repaint.Settings(steps=250, jump_length=10, jump_n_sample=10))
        )
        > space.ZEROGPU_SLOT_S
    )
    estimate = page.value("estimate")  # the page's first estimate: the default model at the defaults
    charged = int(re.search(r"Requests \*\*(\d+) s\*\* of ZeroGPU quota \((\d+) s x 1.5", estimate).group(1))
    assert "within the daily quota of: anonymous (120 s/day)" in estimate and "assumed 25 TFLOP/s" in estimate
    assert charged <= space.ZEROGPU_SLOT_S
    before = len(device_calls(api))
    ok, out = outcome(page.inpaint("cat", *defaults))
    assert ok and out[0].startswith("Done"), out
    (scheduled,) = [int(p["durationSeconds"]) for path, p in device_calls(api)[before:] if path == "/schedule"]
    assert scheduled == charged <= space.ZEROGPU_QUOTA_S["anonymous"]  # what the page said, on the wire
    assert page.predict(page.fn("paper", "click"), []) == [250, 10, 10]


def test_a_run_that_would_outlast_its_slot_stops_first_and_says_how_far_it_got(server):
    """Issue 25: ZeroGPU ends a task that outlasts its slot, and the visitor then sees "GPU task aborted". The run
    watches its slot (the seconds the request asked for, carried by the request into the worker) and stops before
    a model call it could not finish with SLOT_RESERVE_S left: a message naming how far it got, and the emulated
    platform, which kills a worker past its duration, never had to."""
    page_url, api, _ = server
    client = Client(page_url, verbose=False)
    settings = dict(model="bundled", image=str(FACE), mask="left_half", steps=250, jump_length=10, jump_n_sample=10)
    before = len(device_calls(api))
    with pytest.raises(
        AppError,
        match=r"Stopped after \d+ of 2,410 model calls: at \d+ ms per call the run would "
        r"outlast its 8 s GPU slot",
    ):
        client.predict({**settings, "slot_s": 8}, api_name="/test_gpu_run")
    calls = device_calls(api)[before:]
    assert [int(p["durationSeconds"]) for path, p in calls if path == "/schedule"] == [12]  # 8 s x 1.5
    assert not [c for c in calls if c[0] == "aborted"]


def test_the_emulated_platform_ends_a_task_past_its_duration(server):
    """What the guard above prevents: the emulation ends a task whose seconds ran out (here cut to 2 s) by killing
    its worker, and spaces says "GPU task aborted"; the next run gets a new worker and finishes."""
    page_url, api, _ = server
    client = Client(page_url, verbose=False)
    settings = dict(model="bundled", image=str(FACE), mask="left_half", steps=250, jump_length=10, jump_n_sample=10)
    httpx.get(api + "test-next", params={"cut_s": 2})
    before = len(device_calls(api))
    with pytest.raises(AppError, match="GPU task aborted"):
        client.predict(settings, api_name="/test_gpu_run")
    assert [c for c in device_calls(api)[before:] if c[0] == "aborted"]
    assert client.predict({**settings, "steps": 10, "jump_length": 5, "jump_n_sample": 2}, api_name="/test_gpu_run")


def test_two_visitors_run_at_the_same_time(server):
    """Finding 6: default_concurrency_limit=1 made every visitor wait for the one before. On ZeroGPU each run has
    a GPU worker of its own: the second is scheduled while the first still holds its GPU."""
    page_url, api, _ = server
    before = len(device_calls(api))
    jobs = [
        Client(page_url, verbose=False).submit(
            handle_file(str(FACE)), "left_half", model, 50, 5, 2, i, 1, False, api_name="/inpaint"
        )
        for i, model in enumerate(("bundled", "cifar10"))
    ]
    results = [job.result(timeout=300) for job in jobs]
    assert all(len(r) == 1 for r in results)
    calls = [path for path, _ in device_calls(api)[before:]]
    assert calls.count("/schedule") == 2
    assert calls.index("/schedule", calls.index("/schedule") + 1) < calls.index("/release")  # both held at once


@pytest.mark.slow  # the AOTInductor compile of the bundled UNet alone takes about 40 s on this machine's CPU
def test_an_ahead_of_time_compiled_unet_loads_once_per_worker_and_equals_the_eager_model(tmp_path):
    """Issue 25, item 4: with REPAINT_AOT=1 the start exports the UNet and compiles it with AOTInductor in a GPU
    slot of its own (in the worker, here on its CPU), and spaces' compiled model replaces the UNet's forward. spaces
    keeps the package it loads per context, and each run is a new one: 3 runs loaded it 3 times in one worker. Now
    it loads once per worker process.

    The compiled model's output equals the eager model's, computed here with the same weights, up to float32
    rounding, at the batches the runs use (1, compare mode's 2, and the export's largest, 32). Runs through /inpaint
    keep the known pixels exactly and equal the eager model's within a level."""
    with serve(tmp_path, REPAINT_MODELS="bundled", REPAINT_MODEL="bundled", REPAINT_AOT="1") as (page_url, api, log):
        (compile_slot, *_) = [int(p["durationSeconds"]) for path, p in device_calls(api) if path == "/schedule"]
        assert compile_slot == round(aot.COMPILE_SLOT_S * 1.5)  # the start's one slot, before any run
        client = Client(page_url, verbose=False)
        eager = repaint.load("bundled", device="cpu")
        eager.unet.to(torch.bfloat16).float()  # its weights as the worker holds them (_zerogpu.py's _as_cpu)
        for batch in (1, 2, aot.BATCH_MAX):
            got = torch.tensor(client.predict("bundled", batch, batch, api_name="/test_eps"))
            x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
            with torch.inference_mode():
                want = eager.eps(x, torch.linspace(999, 0, batch).long())
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        settings = dict(steps=10, jump_length=5, jump_n_sample=2, seed=3)
        rgb, fill = eager.prepare(str(FACE), "left_half")
        (resampled, plain) = eager.compare(str(FACE), "left_half", **settings)
        runs = [(False, [resampled[0]])] * 3 + [(True, [resampled[0], plain[0]])]
        for compare, wanted in runs:
            results = client.predict(
                handle_file(str(FACE)), "left_half", "bundled", 10, 5, 2, 3, 1, compare, api_name="/inpaint"
            )
            for result, want in zip(results if compare else [results[0]], wanted, strict=True):
                got = np.asarray(Image.open(result["image"]).convert("RGB")).astype(int)
                assert (got[~fill] == rgb[~fill]).all()
                assert np.abs(got - np.asarray(want).astype(int)).max() <= 1
        words = log.read_text().split("\n")
    loads = [w for w in words if w.startswith("load")]
    workers = {w.split()[1] for w in loads}
    assert len(loads) == len(workers) >= 1, loads  # one load per worker process, however many runs it served
    assert words.count("call") >= 4 * repaint.count_model_calls(10, 5, 2)  # and the runs went through it


def test_the_page_on_zerogpu_says_why_a_model_is_missing_and_offers_no_hub_ids(tmp_path):
    """Issue 25, item 5: REPAINT_MODEL names an offered model that cannot be loaded (not cached, Hub offline).
    The notice said it was "not an offered model", or "No GPU here" on a GPU; the model box offered typing a Hub
    id that the server then refused. The notice now says the model could not be loaded and why, and the box offers
    only what the server takes."""
    with serve(
        tmp_path,
        REPAINT_MODELS="church,bundled",
        REPAINT_MODEL="church",
        HF_HUB_OFFLINE="1",
        REPAINT_ALLOW_HUB_IDS="1",
        expect_models="bundled",
    ) as (page_url, _, _):
        page = Page(page_url)
        notice = page.value("notice")
        assert "REPAINT_MODEL='church' could not be loaded; using 'bundled'." in notice, notice
        assert "Not offered: Could not load model 'church'" in notice and "not in the local cache" in notice, notice
        assert "not an offered model" not in notice and "No GPU here" not in notice, notice
        model_box = next(c["props"] for c in page.config["components"] if c["props"].get("elem_id") == "model")
        assert [value for _, value in model_box["choices"]] == ["bundled"]
        assert "Hub id" not in (model_box.get("info") or "")
