"""ZeroGPU on this CPU, through the real ``spaces`` package (0.51.3): a loopback device API and a CPU for the worker.

``spaces`` in ZeroGPU mode (``SPACES_ZERO_GPU=true``) is used as it is: its torch patching in the main process
(CUDA faked by a thread-local TorchFunctionMode, ``.to("cuda")`` recorded at module level and raising in other
threads), the packing of those tensors to disk at ``launch()``, its ``@spaces.GPU`` wrapper with the forked worker
process reused across calls, the pickling of arguments and yielded values, the stop event set when the main
process closes the generator, and the wrapping of every error but ``gr.Error``. Replaced, because they need a GPU
or Hugging Face's scheduler:

- the device API (``SPACES_ZERO_DEVICE_API_URL``): :class:`DeviceAPI`, a loopback HTTP server answering
  ``/startup-report``, ``/schedule`` (one GPU index per task running at once; a quota in seconds per visitor if
  asked; on request a wait in the queue and a GPU not idle), ``/allow`` and ``/release``, recording each call, and
  ending a task that runs past its requested duration by killing its worker, as ZeroGPU ends it;
- in the worker, ``spaces.zero.torch.init`` (which makes the CUDA context) does nothing, and ``.move`` (which
  copies the packed tensors to the GPU) reads them from spaces' own pack file into CPU memory: the worker's
  "cuda" tensors are CPU tensors, in float32 where the GPU would hold bfloat16 or float16 (which this CPU computes
  about 14x slower);
- the GPU's model, which spaces reads from the NVIDIA driver's files (``/proc/driver/nvidia/gpus``, absent here) to
  pick its entry of ``spaces/zero/configs.json``: the RTX PRO 6000 Blackwell's, the hardware ZeroGPU's documentation
  names, so its ``duration_factor`` (1.5) multiplies each request's seconds on their way to ``/schedule`` as on the
  platform (spaces reads the CUDA properties it fakes, name and memory, at import, before this: they stay the
  H200's, which nothing here reads);
- on a CPU build of torch, ``torch.version.cuda`` reads "12.8" and ``torch._C._cuda_init`` exists (raising): spaces
  reads the one and saves the other at import, and ``torch.cuda._is_in_bad_fork`` is a plain function (a lambda
  there, which spaces' fork check cannot pickle). ``Tensor.pin_memory`` returns the tensor as it is: spaces pins
  the weights of an ahead-of-time compiled model when the worker sends it back, and pinning needs a GPU;
- spaces' ahead-of-time compilation (``REPAINT_AOT=1``) is its own: export and AOTInductor run in the worker on
  its CPU tensors (a CPU kernel, where the platform builds CUDA ones), and the drained parameters it leaves (empty
  tensors) are packed and moved like any other.

``python tests/_zerogpu.py PORT`` (0: a free one) serves app.py so emulated (the zerogpu tests start it) until
SIGTERM, printing
"READY <app url> <device API url>"; ``GET <device API url>/test-calls`` lists the device API's calls. The app's
settings come from the environment (REPAINT_MODELS, HF_HOME). With ``REPAINT_TEST_CALL_LOG`` set, every model call
(in any process) appends "call" to that file, each load of an ahead-of-time compiled UNet "load PID", and the main
process appends "stop" when spaces sets a worker's stop event. With ``REPAINT_TEST_FAULT_FILE`` set, a model call
raises a GPU's error when that file asks for one (:func:`inject_faults`). Two endpoints are added for the tests:
``/test_gpu_run``, the app's GPU function on a request that skipped the checks (an error raised inside the worker),
and ``/test_eps``, one model call in the worker (what an ahead-of-time compiled UNet computes there).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

BLACKWELL = "NVIDIA RTX PRO 6000 Blackwell Server Edition"  # its "model" in spaces 0.51.3's configs.json


class DeviceAPI:
    """A stand-in for ZeroGPU's device API on 127.0.0.1: every request is granted a GPU index not in use (so
    concurrent tasks get workers of their own), unless the visitor's ``quota_s`` cannot pay the requested seconds
    (then 429 with what is left, as HF's scheduler answers). It grants a GPU at once and reports it idle (so spaces
    reuses that GPU's worker process), except for the task after a ``/test-next?wait_s=S`` call: that one waits S
    seconds, as in ZeroGPU's queue (a "queued" call is recorded when it starts waiting), and its GPU is reported not
    idle, so spaces forks a new worker for it, as it does on the platform when another Space used the GPU in between.

    A task still holding its GPU when its ``durationSeconds`` have passed is ended as ZeroGPU ends it: its worker
    process (the pid spaces sends with ``/allow``) is killed, and spaces reports "GPU task aborted". ``cut_s`` in
    ``/test-next`` ends the next task after that many seconds instead, as if the platform cut it short."""

    def __init__(self, quota_s: int | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.in_use: dict[str, int] = {}  # allow token -> GPU index
        self.quota_s, self.spent_s = quota_s, 0
        self.next_wait_s, self.next_busy, self.next_cut_s = 0.0, False, None  # /test-next, for the next /schedule
        self.deadlines: dict[str, float] = {}  # allow token -> when its task's seconds run out (time.monotonic)
        self.pids: dict[int, int] = {}  # GPU index -> the pid of the worker that holds it (from /allow)
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, body = api.answer(url.path.rstrip("/"), params)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self.enforce_durations, daemon=True).start()

    def enforce_durations(self) -> None:
        """Kills the worker of each task past its duration (checked every 0.1 s)."""
        while True:
            time.sleep(0.1)
            with self.lock:
                late = [t for t, deadline in self.deadlines.items() if time.monotonic() > deadline]
                for token in late:
                    del self.deadlines[token]
                    pid = self.pids.get(self.in_use.get(token))
                    self.calls.append(("aborted", {"allowToken": token, "pid": pid}))
                    if pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)

    def answer(self, path: str, params: dict) -> tuple[int, dict | None]:
        if path == "/schedule":
            with self.lock:
                wait, self.next_wait_s = self.next_wait_s, 0.0
                if wait:
                    self.calls.append(("queued", params))  # not ZeroGPU's: the tests see the task wait
            time.sleep(wait)  # the task waits in ZeroGPU's queue for a GPU
        with self.lock:
            self.calls.append((path, params))
            if path == "/allow":  # a new worker, before its first task: its pid
                if params.get("allowToken") in self.in_use:
                    self.pids[self.in_use[params["allowToken"]]] = int(params["pid"])
                return 200, None
            if path == "/startup-report":
                return 200, None
            if path == "/test-next":  # not ZeroGPU's: the next task waits this long, on a GPU not idle (or is cut)
                self.next_wait_s = float(params.get("wait_s", 0))
                self.next_busy = "wait_s" in params
                self.next_cut_s = float(params["cut_s"]) if "cut_s" in params else None
                return 200, None
            if path == "/schedule":
                seconds = int(params.get("durationSeconds", 60))
                if self.quota_s is not None and self.spent_s + seconds > self.quota_s:
                    return 429, {"left": self.quota_s - self.spent_s, "wait": 3600}
                self.spent_s += seconds
                index = min(set(range(len(self.in_use) + 1)) - set(self.in_use.values()))
                token = f"token-{len(self.calls)}"
                self.in_use[token] = index
                idle, self.next_busy = not self.next_busy, False
                cut, self.next_cut_s = self.next_cut_s, None
                self.deadlines[token] = time.monotonic() + (seconds if cut is None else cut)
                return 200, {
                    "idle": idle,
                    "nvidiaIndex": index,
                    "nvidiaUUID": f"GPU-emulated-{index}",
                    "allowToken": token,
                }
            if path == "/release":
                self.in_use.pop(params.get("allowToken"), None)
                self.deadlines.pop(params.get("allowToken"), None)
                return 200, None
            if path == "/queue-size":
                return 200, 0
            if path == "/test-calls":  # not ZeroGPU's: what the tests read
                return 200, self.calls[:-1]
            return 404, None

    def durations(self) -> list[int]:
        """The GPU seconds each scheduled task asked for."""
        return [int(p["durationSeconds"]) for path, p in self.calls if path == "/schedule"]


def install(api_url: str, offload_dir: str) -> None:
    """ZeroGPU mode for this process: the environment ``spaces`` reads, then ``spaces`` imported (before anything
    touches CUDA), then the two GPU steps of its worker replaced by their CPU equivalents."""
    os.environ.update(SPACES_ZERO_GPU="true", SPACES_ZERO_DEVICE_API_URL=api_url, ZEROGPU_OFFLOAD_DIR=offload_dir)
    import torch

    if torch.version.cuda is None:  # a CPU build: what spaces reads at import
        torch.version.cuda = "12.8"
    if not hasattr(torch._C, "_cuda_init"):

        def no_cuda():
            raise RuntimeError("this torch has no CUDA: the emulated worker runs its 'cuda' tensors on the CPU")

        torch._C._cuda_init = no_cuda
        torch.cuda._is_in_bad_fork = not_in_bad_fork  # a lambda there, which spaces' fork check cannot pickle
        torch.Tensor.pin_memory = unpinned  # spaces pins the compiled weights it sends back (aoti.ZeroGPUWeights)
    import spaces  # noqa: F401 - patches torch
    import spaces.zero.torch as zero_torch
    from spaces.zero import config
    from spaces.zero.torch import patching

    config._read_gpu_information = lambda: f"Model: \t\t {BLACKWELL}\n"  # the driver's information file, its line
    config.get_config.cache_clear()

    def init(nvidia_uuid: str) -> None:  # the real one creates the CUDA context on that GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = nvidia_uuid

    def move(callback=None) -> None:  # the real one copies every recorded tensor to the GPU; here to CPU memory
        for fake, original in patching.cuda_aliases.items():
            if original is not None:
                fake.data = _as_cpu(original)
        for pack in patching.tensor_packs:
            _pack_to_cpu(pack)

    zero_torch.init, zero_torch.move = init, move


def not_in_bad_fork() -> bool:
    return False


def unpinned(tensor, device=None):
    """``Tensor.pin_memory`` without an accelerator: the tensor as it is (page-locked memory only speeds a copy to
    the GPU, and there is none)."""
    return tensor


def _pack_to_cpu(pack) -> None:
    """spaces' ``pack_to_cuda`` with CPU memory as the device: the same pack file, layout and fakes."""
    import torch

    with open(pack.path(), "rb") as f:
        for batch in pack.batches:
            for tensor, size, aligned in batch:
                _set(pack, tensor, f.read(aligned)[:size])
        for tensor, size, aligned in pack.big_tensors:
            _set(pack, tensor, f.read(aligned)[:size])
    del torch


def _set(pack, meta, data: bytes) -> None:
    import torch

    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    storage = raw.untyped_storage()  # empty for the parameters spaces drained after an ahead-of-time compile
    real = _as_cpu(torch.tensor([], dtype=meta.dtype).set_(storage, 0, meta.shape, meta.stride()))
    for fake in pack.fakes[meta]:
        fake.data = real


def _as_cpu(tensor):
    """A GPU's half-precision tensor as the CPU computes it fast: float32 (a bfloat16 convolution takes this CPU
    1.8 s where float32 takes 0.13 s, bundled model, batch 1, one thread)."""
    import torch

    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


def log_calls(path: str) -> None:
    """Every model call appends "call" to ``path`` (from the worker too: the patch is inherited by the fork), and
    every load of an ahead-of-time compiled package "load PID"; the main process appends "stop" when spaces sets a
    worker's stop event (it does so when its generator is closed)."""
    from multiprocessing import synchronize

    from repaint import models

    def append(word: str) -> None:
        with open(path, "a") as f:
            f.write(word + "\n")

    eps = models.Inpainter.eps

    def counted(self, *args, **kwargs):
        append("call")
        return eps(self, *args, **kwargs)

    models.Inpainter.eps = counted
    import torch._inductor

    load_package = torch._inductor.aoti_load_package

    def logged_load(*args, **kwargs):  # an ahead-of-time compiled UNet loaded into a process (repaint.space.aot)
        append(f"load {os.getpid()}")
        return load_package(*args, **kwargs)

    torch._inductor.aoti_load_package = logged_load
    set_ = synchronize.Event.set

    def set_and_log(self):
        set_(self)
        append("stop")

    synchronize.Event.set = set_and_log


def inject_faults(path: str) -> None:
    """A GPU's errors on demand, raised by a model call in the worker: when ``path`` holds "N KIND", the N-th model
    call from then on raises KIND's error (``oom``: torch's out-of-memory error, ``cuda``: a CUDA error, as torch
    words them) and the file is removed. The file is how the request crosses into the worker process."""
    import torch

    from repaint import models

    faults = {
        "oom": lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "cuda": lambda: RuntimeError("CUDA error: an illegal memory access was encountered"),
    }
    eps = models.Inpainter.eps

    def faulty(self, *args, **kwargs):
        fault = Path(path)
        if fault.exists():
            n, kind = fault.read_text().split()
            if int(n) <= 1:
                fault.unlink()
                raise faults[kind]()
            fault.write_text(f"{int(n) - 1} {kind}")
        return eps(self, *args, **kwargs)

    models.Inpainter.eps = faulty


def main(port: int) -> None:
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 PID: where each thread is (worker too)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    api = DeviceAPI(int(os.environ["ZEROGPU_TEST_QUOTA_S"]) if os.environ.get("ZEROGPU_TEST_QUOTA_S") else None)
    install(api.url, os.environ.get("ZEROGPU_OFFLOAD_DIR") or str(Path.cwd() / ".zerogpu"))
    if os.environ.get("REPAINT_TEST_CALL_LOG"):
        log_calls(os.environ["REPAINT_TEST_CALL_LOG"])
    if os.environ.get("REPAINT_TEST_FAULT_FILE"):
        inject_faults(os.environ["REPAINT_TEST_FAULT_FILE"])
    import app

    print("ZEROGPU", app.ON_ZEROGPU, "MODELS", ",".join(app.SERVICE.cache.models), flush=True)
    import gradio as gr
    import spaces
    import torch

    import repaint
    from repaint import space

    def test_gpu_run(settings: dict) -> int:
        """The GPU function on an unchecked request: how many events it yielded (or the error it raised)."""
        request = {k: settings.pop(k) for k in ("model", "image", "mask", "slot_s") if k in settings}
        return sum(1 for _ in app.gpu_run(space.Request(**request, settings=repaint.Settings(**settings))))

    @spaces.GPU(duration=60)
    def test_eps(model: str, seed: int, batch: int) -> list:
        """One model call in the worker, as the sampler makes it, on a seeded input at timesteps spread over the
        chain: the output as nested lists."""
        inp = app.SERVICE.cache.get_model(model)
        x = torch.randn(
            batch, inp.channels, inp.resolution, inp.resolution, generator=torch.Generator().manual_seed(seed)
        )
        t = torch.linspace(inp.train_steps - 1, 0, batch).long()
        with torch.inference_mode():
            return inp.eps(x.to(inp.device), t.to(inp.device)).cpu().tolist()

    with app.demo:
        gr.api(test_gpu_run, api_name="test_gpu_run")
        gr.api(test_eps, api_name="test_eps")
    app.demo.launch(
        server_name="127.0.0.1", server_port=port or None, prevent_thread_lock=True, quiet=True, **app.LAUNCH_KWARGS
    )
    print("READY", app.demo.local_url, api.url, flush=True)
    # Until SIGTERM (then the exit ends the daemon workers too). Not reading stdin: a worker forked while this
    # thread waits in sys.stdin's reader would hang closing it (multiprocessing closes stdin in a new process).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
