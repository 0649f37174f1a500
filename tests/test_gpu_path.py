"""The GPU path, as far as a CPU can check it (issue 18): the sampler makes no host-device round trip per step,
and the ahead-of-time compilation helper falls back cleanly off ZeroGPU.

A blocking host-device copy cannot be seen on a CPU, so the test counts, during sampling, every call that would be
one on a GPU: reading a tensor into Python (``item``, ``tolist``, ``bool``, ``int``, ``float``, ``__index__``,
``cpu``, ``numpy``), a tensor made from host data (``torch.tensor``, ``as_tensor``, ``from_numpy``; on a GPU a
synchronous copy), a ``.to(device)`` and an index given as a Python list (copied to the device first). What runs
once per sampling call (the tables, the timestep tables) is allowed; what grows with the number of steps is not.
"""

from __future__ import annotations

import collections

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from repaint.sampler import sample_repaint
from repaint.schedule import jump_schedule, noise_tables

READS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy"}
FROM_HOST = {"tensor", "as_tensor", "from_numpy"}


class HostDeviceTraffic(TorchFunctionMode):
    """Counts the calls that would move data between host and device on a GPU."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in READS or name in FROM_HOST:
            self.calls[name] += 1
        elif name == "to" and ("device" in kwargs or any(isinstance(a, (str, torch.device)) for a in args[1:])):
            self.calls["to(device)"] += 1
        elif name in ("__getitem__", "__setitem__") and _host_index(args[1]):
            self.calls[f"{name}(list)"] += 1
        return func(*args, **kwargs)


def _host_index(index) -> bool:
    """An index holding a Python list (copied to the device before indexing there)."""
    return isinstance(index, list) or (isinstance(index, tuple) and any(isinstance(i, list) for i in index))


def _traffic(pipe, steps: int, rs: list[int], learned: bool = False) -> collections.Counter:
    config = dict(pipe.scheduler_config, variance_type="learned_range") if learned else pipe.scheduler_config
    tables = noise_tables(config, steps)
    schedules = [jump_schedule(steps, 2, r) for r in rs]
    x = torch.randn(len(rs), 3, 16, 16, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(i) for i in range(len(rs))]
    image, mask = torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :8] = True
    model = (lambda x, t: pipe.eps(x, t).repeat(1, 2, 1, 1).clamp(-1, 1)) if learned else pipe.eps
    with torch.inference_mode(), HostDeviceTraffic() as mode:
        sample_repaint(model, x, image, mask, tables, schedules, gens)
    return mode.calls


@pytest.mark.parametrize("rs", [[1], [3, 3], [3, 1], [2, 1, 3]], ids=["one", "batch", "compare", "mixed"])
def test_no_host_device_traffic_grows_with_the_steps(pipe, rs):
    few, many = _traffic(pipe, 4, rs), _traffic(pipe, 12, rs)
    assert few == many, f"per-step host-device traffic: {dict(few)} at T=4, {dict(many)} at T=12"
    assert sum(few.values()) <= 2, dict(few)  # the timestep/index tables, copied once


def test_learned_range_makes_no_per_step_traffic(pipe):
    assert _traffic(pipe, 4, [2, 1], learned=True) == _traffic(pipe, 10, [2, 1], learned=True)


@settings(max_examples=8, deadline=None)
@given(steps=st.integers(2, 9), j=st.integers(1, 3), r=st.integers(1, 3))
def test_traffic_is_constant_over_schedules(pipe, steps, j, r):
    j = min(j, steps)
    ref = noise_tables(pipe.scheduler_config, steps)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    mask = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    with torch.inference_mode(), HostDeviceTraffic() as mode:
        sample_repaint(
            pipe.eps,
            x,
            torch.zeros(1, 3, 16, 16),
            mask,
            ref,
            [jump_schedule(steps, j, r), jump_schedule(steps, j, 1)],
            gens,
        )
    assert sum(mode.calls.values()) <= 2, dict(mode.calls)


def test_aot_compilation_is_off_the_cpu_path(pipe):
    """Off ZeroGPU, compile_unet changes nothing, imports none of spaces' ZeroGPU code, and returns False."""
    import sys

    from repaint.space import aot

    x, t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([999, 3])
    with torch.inference_mode():
        want = pipe.eps(x, t)
    assert not aot.on_zerogpu()
    assert aot.compile_unet(pipe) is False
    assert "forward" not in vars(pipe.unet) and "spaces.zero.torch.aoti" not in sys.modules
    with torch.inference_mode():
        assert torch.equal(pipe.eps(x, t), want)


def test_a_failed_aot_compilation_leaves_the_model_working():
    """Forced onto the compile path with a GPU slot of the test's own (the function runs in-process), on this CPU
    build of torch, where spaces' ZeroGPU code cannot even import (no CUDA version): the failure is logged, False
    comes back and the model runs eagerly, unchanged. In a subprocess, so that the half-imported ZeroGPU modules
    stay out of this one."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import logging, sys, torch
sys.path.insert(0, "tests")
from _tiny import tiny_pipe
from repaint.space import aot
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
pipe = tiny_pipe()
x, t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([999, 3])
with torch.inference_mode():
    want = pipe.eps(x, t)
slots = []
assert aot.compile_unet(pipe, gpu=lambda f: slots.append(f) or f) is False
assert len(slots) == 1 and "forward" not in vars(pipe.unet)
with torch.inference_mode():
    assert torch.equal(pipe.eps(x, t), want)
print("fallback ok")
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fallback ok" in done.stdout
    assert "repaint.space.aot ahead-of-time compilation of tiny failed" in done.stderr
    assert "runs uncompiled" in done.stderr


def test_channels_last_is_for_cuda_only_and_changes_no_result(pipe):
    """loading.place_unet gives a CUDA UNet channels_last weights and leaves a CPU one as it is; the layout itself
    changes the model's output by rounding only (checked here on the CPU, where it can run)."""
    import copy

    from repaint import loading

    cpu = loading.place_unet(copy.deepcopy(pipe.unet), torch.device("cpu"))
    assert all(p.is_contiguous() for p in cpu.parameters())
    last = copy.deepcopy(pipe.unet).to(memory_format=torch.channels_last)
    assert any(p.ndim == 4 and not p.is_contiguous() for p in last.parameters())
    x, t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([999, 3])
    with torch.inference_mode():
        torch.testing.assert_close(last(x, t).sample, pipe.unet(x, t).sample, rtol=1e-5, atol=1e-5)


def test_preload_compiles_each_offered_model_only_when_asked(monkeypatch):
    """REPAINT_AOT=1: preload hands every offered model to compile_unet (which itself does nothing off ZeroGPU, see
    above); unset, compile_unet is never called. compile_unet is replaced by a recorder: it cannot compile here."""
    from repaint import space
    from repaint.space import aot

    seen = []
    monkeypatch.setattr(aot, "compile_unet", lambda inp: seen.append(inp.name) or False)
    for value, want in (("", []), ("1", ["bundled"])):
        monkeypatch.setenv(space.AOT_ENV, value)
        svc = space.Service(offered=["bundled"])
        seen.clear()
        assert svc.cache.preload() == ""
        assert seen == want
