"""Load, refusal and disconnect tests of the Space on a live loopback server (bundled model, CPU).

Every request loop here is bounded in count and in time, and only 127.0.0.1 is contacted.
``pytest -m slow tests/test_load.py -s`` also measures requests per minute (see test_throughput).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import app
import repaint

SMALL = dict(model="bundled", steps=10, jump_length=5, jump_n_sample=2, num_samples=1, compare=False)
N_CONCURRENT = 24  # requests sent at once (under QUEUE_MAX, so all must complete)
DEADLINE_S = 180  # the whole burst must be answered by then
PRESET = "every_second_line"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(max_size: int = app.QUEUE_MAX) -> str:
    """Launches app.demo on loopback with the queue holding ``max_size`` waiting requests; its URL."""
    app.demo.queue(max_size=max_size, default_concurrency_limit=app.CONCURRENCY)
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                    **app.LAUNCH_KWARGS)
    return app.demo.local_url


@pytest.fixture
def server():
    url = launch()
    try:
        yield url
    finally:
        app.demo.close()


@pytest.fixture
def small_queue_server():
    url = launch(max_size=2)
    try:
        yield url
    finally:
        app.demo.close()
        app.demo.queue(max_size=app.QUEUE_MAX, default_concurrency_limit=app.CONCURRENCY)  # as app.py has it


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "face.png"
    Image.open(app.EXAMPLES_DIR / "face1.png").save(path)
    return path


def result_path(result) -> str:
    (r,) = result
    return r["image"] if isinstance(r, dict) else r[0]


def known_pixels_kept(result, face) -> bool:
    res = np.asarray(Image.open(result_path(result)).convert("RGB"))
    rgb, m = repaint.load("bundled").prepare(str(face), PRESET)
    return res.shape == rgb.shape and bool((res[~m] == rgb[~m]).all())


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == app.WORKER_NAME and t.is_alive()]


def wait_until(cond, timeout: float, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return cond()


def burst(url: str, face, n: int, settings: dict, deadline: float = DEADLINE_S) -> list[tuple[str, object]]:
    """``n`` requests at once, each from its own thread and client; [("ok", result) or ("error", exc)]."""
    def one(i):
        try:
            client = Client(url, verbose=False)
            return "ok", client.predict(handle_file(str(face)), PRESET, seed=i, api_name="/inpaint", **settings)
        except Exception as e:  # noqa: BLE001 - the test sorts them
            return "error", e

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        end = time.monotonic() + deadline
        return [f.result(timeout=max(0.1, end - time.monotonic())) for f in futures]  # TimeoutError = a hang


# ------------------------------------------------------------------------------------------- load
def test_concurrent_requests_all_complete_with_correct_results(server, face):
    start = time.monotonic()
    outcomes = burst(server, face, N_CONCURRENT, SMALL)
    spent = time.monotonic() - start
    errors = [o for kind, o in outcomes if kind == "error"]
    assert not errors, errors[:3]
    assert all(known_pixels_kept(r, face) for _, r in outcomes)
    assert spent < DEADLINE_S
    assert wait_until(lambda: not workers(), 5)  # nothing left running
    print(f"\n{N_CONCURRENT} concurrent requests (T=10, j=5, r=2) answered in {spent:.1f} s")


def test_full_queue_refuses_cleanly_and_the_server_keeps_serving(small_queue_server, face):
    n = 12
    outcomes = burst(small_queue_server, face, n, {**SMALL, "steps": 50, "jump_n_sample": 3})
    done = [r for kind, r in outcomes if kind == "ok"]
    refused = [e for kind, e in outcomes if kind == "error"]
    assert len(done) + len(refused) == n
    assert done and all(known_pixels_kept(r, face) for r in done)
    assert refused, "a queue of 2 took 12 requests at once"
    for e in refused:
        assert "queue is full" in str(e).lower(), repr(e)
    # still serving a normal request
    client = Client(small_queue_server, verbose=False)
    after = client.predict(handle_file(str(face)), PRESET, seed=0, api_name="/inpaint", **SMALL)
    assert known_pixels_kept(after, face)


# ------------------------------------------------------------------------------------------- cancel / disconnect
LONG = {**SMALL, "steps": 250, "jump_length": 10, "jump_n_sample": 10}  # 2,410 model calls: ~30 s on a CPU


def test_cancelled_job_stops_the_model(server, face):
    client = Client(server, verbose=False)
    job = client.submit(handle_file(str(face)), PRESET, seed=0, api_name="/inpaint", **LONG)
    assert wait_until(lambda: bool(workers()), 30), "the run did not start"
    time.sleep(0.5)
    job.cancel()
    start = time.monotonic()
    assert wait_until(lambda: not workers(), 10), "the model kept running after the job was cancelled"
    print(f"\nworker stopped {time.monotonic() - start:.2f} s after job.cancel()")
    after = client.predict(handle_file(str(face)), PRESET, seed=0, api_name="/inpaint", **SMALL)
    assert known_pixels_kept(after, face)


def test_client_that_disconnects_does_not_leave_work_running(server, face):
    """A raw client: join the queue, read the event stream a little, then drop the connection."""
    with httpx.Client(base_url=server.rstrip("/") + "/gradio_api", timeout=30) as http:
        uploaded = http.post("/upload", files={"files": ("face.png", face.read_bytes(), "image/png")}).json()[0]
        fn_index = next(d["id"] for d in app.demo.config["dependencies"] if d.get("api_name") == "inpaint")
        data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, PRESET, "bundled", LONG["steps"],
                LONG["jump_length"], LONG["jump_n_sample"], 0, 1, False]
        session = "load-test-disconnect"
        join = http.post("/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                               "event_data": None, "trigger_id": None})
        assert join.status_code == 200, join.text
        with http.stream("GET", "/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():  # bounded: the run yields within a second (30 s timeout above)
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                    break  # running: the model has made its first calls
            assert workers(), "the run did not start"
        # the stream is closed here: the client is gone
    start = time.monotonic()
    assert wait_until(lambda: not workers(), 15), "the model kept running after the client disconnected"
    print(f"\nworker stopped {time.monotonic() - start:.2f} s after the client disconnected")


# ------------------------------------------------------------------------------------------- throughput
@pytest.mark.slow
@pytest.mark.parametrize("settings", [
    dict(steps=10, jump_length=5, jump_n_sample=2, num_samples=1),  # the load test's settings
    dict(steps=50, jump_length=5, jump_n_sample=5, num_samples=2),  # the first example of the page
], ids=["T10-j5-r2", "example-T50-j5-r5-x2"])
def test_throughput(server, face, settings):
    """Requests per minute the CPU app holds: a burst of concurrent requests, answered one at a time."""
    n = 20
    start = time.monotonic()
    outcomes = burst(server, face, n, {**SMALL, **settings}, deadline=600)
    spent = time.monotonic() - start
    assert all(kind == "ok" for kind, _ in outcomes)
    calls = app.model_calls(settings["steps"], settings["jump_length"], settings["jump_n_sample"])
    print(f"\nTHROUGHPUT {settings}: {n} requests in {spent:.1f} s = {60 * n / spent:.1f} requests/min "
          f"({calls} model calls each, {1000 * app._call_s['bundled']:.1f} ms per call measured at load)")
