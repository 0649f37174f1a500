"""Ahead-of-time compilation of a loaded model's UNet on ZeroGPU, with the ``spaces`` package's AoTI helpers.

ZeroGPU does not support ``torch.compile``; it supports ahead-of-time compilation (torch >= 2.8): capture one call
of the UNet (``spaces.aoti_capture``), ``torch.export`` it, compile it with AOTInductor inside a GPU slot
(``spaces.aoti_compile``) and swap the compiled forward in (``spaces.aoti_apply``). Hugging Face reports 1.3-1.8x
on diffusion models; no GPU was lent to this project to measure it here.

:func:`compile_unet` does that on ZeroGPU, once per model, at start-up (module level, main thread, after the model
is loaded and before ``launch()``). Anywhere else (a CPU, a plain GPU, no ``spaces``), or if any step fails, it
changes nothing and returns False: the model runs eagerly, as before. It is never on the CPU path.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import torch

from ..pipeline import Inpainter

__all__ = ["compile_unet", "export_unet", "on_zerogpu"]

log = logging.getLogger(__name__)

BATCH_MAX = 32  # largest batch the compiled UNet accepts: 2 x LIMITS' 16 samples (compare mode doubles it)
# GPU seconds asked for one compilation. Too short, ZeroGPU ends the task and the model stays eager (logged); too long
# costs no visitor anything (start-up). The CPU's figures (docs/deploy.md, step 7) are a floor only: on CUDA,
# AOTInductor also compiles and autotunes Triton kernels, which no machine here could time.
COMPILE_SLOT_S = 900


class PerProcess:
    """One loaded value per process, with a ContextVar's ``get``/``set``.

    spaces' ``ZeroGPUCompiledModel`` keeps the package it loads (``aoti_load_package``: reading the archive and the
    weights into the GPU) in a ContextVar. spaces runs each task in a fresh context and :meth:`Service.run` calls the
    model from a new thread each run, so every run loaded the package again (tests/test_zerogpu.py). The worker
    process is reused across tasks; this keeps the loaded package for the process's life. Keyed by pid, so a
    process forked after a load does not use its parent's copy (a CUDA context does not survive a fork)."""

    def __init__(self):
        self._pid, self._value, self._lock = None, None, threading.Lock()

    def get(self):
        with self._lock:
            return self._value if self._pid == os.getpid() else None

    def set(self, value) -> None:
        with self._lock:
            self._pid, self._value = os.getpid(), value


def on_zerogpu() -> bool:
    """Running on ZeroGPU hardware (``spaces`` imported, in its ZeroGPU mode)."""
    try:
        import spaces
    except ImportError:
        return False
    return bool(getattr(spaces.config.Config, "zero_gpu", False))


def export_unet(inp: Inpainter, batch_max: int = BATCH_MAX) -> torch.export.ExportedProgram:
    """``torch.export`` of ``inp.unet`` as :meth:`Inpainter.eps` calls it, captured with ``spaces.aoti_capture``,
    with a dynamic batch (1 to ``batch_max``): compare mode and several samples call it with other batches. The
    example input is made where the UNet's weights are: in a ZeroGPU worker, the GPU."""
    import spaces

    device = next(inp.unet.parameters()).device

    batch = 2  # not 1: export would specialise a size-1 dimension
    x = torch.randn(batch, inp.channels, inp.resolution, inp.resolution, device=device)
    t = torch.full((batch,), inp.train_steps - 1, dtype=torch.long, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device) if inp.num_classes else None
    with spaces.aoti_capture(inp.unet) as call:
        inp.eps(x, t, labels)
    dim = torch.export.Dim("batch", min=1, max=batch_max)
    names = ("sample", "timestep")
    shapes = {name: {0: dim} for name in names[: len(call.args)]}
    shapes |= {k: ({0: dim} if isinstance(v, torch.Tensor) else None) for k, v in call.kwargs.items()}
    return torch.export.export(inp.unet, args=call.args, kwargs=call.kwargs, dynamic_shapes=shapes)


def compile_unet(inp: Inpainter, *, gpu=None, batch_max: int = BATCH_MAX) -> bool:
    """On ZeroGPU: compile ``inp.unet`` ahead of time in one GPU slot and swap it in; True when done.

    Elsewhere, or when anything fails (torch < 2.8, an operator export cannot trace, a compiler error), the model
    is left as it was (logged) and this returns False. ``gpu``: the decorator that gives the slot (default
    ``spaces.GPU(duration=COMPILE_SLOT_S)``; tests pass their own).
    """
    if gpu is None and not on_zerogpu():
        return False
    try:
        import spaces

        decorate = gpu or spaces.GPU(duration=COMPILE_SLOT_S)

        @decorate
        def build():
            start = time.perf_counter()
            compiled = spaces.aoti_compile(export_unet(inp, batch_max))
            return compiled, time.perf_counter() - start

        compiled, seconds = build()
        compiled.compiled_model = PerProcess()  # see PerProcess
        spaces.aoti_apply(compiled, inp.unet)
    except Exception as e:  # noqa: BLE001 - compilation is an optimisation: any failure leaves the eager model
        log.warning(
            "ahead-of-time compilation of %s failed (%s: %s); it runs uncompiled", inp.name, type(e).__name__, e
        )
        return False
    # The measured time, for sizing COMPILE_SLOT_S from the platform's own figures (the Space's log shows it)
    log.info(
        "compiled %s ahead of time: export and compile took %.0f s of the %d s slot", inp.name, seconds, COMPILE_SLOT_S
    )
    return True
