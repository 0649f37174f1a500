"""The errors of the Space layer: a request refused with a message for the visitor, how handlers show it, and what
a run's failure becomes for the visitor."""

from __future__ import annotations

import functools
import html
import inspect
import logging

import torch

__all__ = [
    "ECHO_MAX",
    "GPU_FAILED",
    "OUT_OF_MEMORY",
    "ServeError",
    "SlotSpent",
    "Stopped",
    "echo",
    "gpu_error",
    "visible",
]

log = logging.getLogger(__name__)


ECHO_MAX = 40  # characters of a visitor's value a message repeats


class ServeError(ValueError):
    """A request the Space refuses, with a message for the visitor."""


def echo(value, limit: int = ECHO_MAX) -> str:
    """A value a visitor sent, as a message repeats it: quoted, at most ``limit`` characters and HTML-escaped.
    Gradio shows an error's text as HTML (sanitised, but links and forms pass), so a model name such as
    ``<a href=...>`` would otherwise be a link in the page; the API's clients get the same text. Every message that
    repeats a visitor's value goes through here."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "'" + html.escape(text, quote=True) + "'"


def visible(error_cls):
    """A decorator for handlers (plain or generators): a ServeError they raise becomes ``error_cls(message)`` (for
    Gradio: gr.Error, the one error it shows, and the one ZeroGPU's worker hands on). Raised outside the
    ``except``, so no traceback of the run (and none of its tensors) hangs on the error."""

    def wrap(fn):
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                    return
                except ServeError as e:
                    message = str(e)
                raise error_cls(message)

            return gen

        @functools.wraps(fn)
        def plain(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ServeError as e:
                message = str(e)
            raise error_cls(message)

        return plain

    return wrap


OUT_OF_MEMORY = "The GPU ran out of memory for this run: use fewer samples, or turn Compare off."
GPU_FAILED = "The GPU failed during the run (a CUDA error): please try again."


def gpu_error(error: BaseException) -> BaseException:
    """What a run's error becomes for the visitor: a ValueError (bad settings) and the GPU's errors they can act on
    (out of memory, a CUDA failure) as a ServeError with a message, every other error unchanged, its traceback in
    the server's log (inside a ZeroGPU worker the visitor would see only its class name)."""
    if isinstance(error, ServeError):
        return error
    if isinstance(error, ValueError):
        return ServeError(str(error))
    text = str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        log.error("run out of GPU memory: %s", text)
        return ServeError(OUT_OF_MEMORY)
    if isinstance(error, RuntimeError) and any(w in text for w in ("CUDA", "cuDNN", "CUBLAS", "cublas", "NCCL")):
        log.error("run failed on the GPU", exc_info=error)
        return ServeError(GPU_FAILED)
    log.error("run failed", exc_info=error)
    return error


class SlotSpent(InterruptedError):
    """A run stopped before it would outlast its GPU slot (raised in the sampler's callback)."""

    def __init__(self, done: int, total: int, per_call: float, slot_s: int):
        self.per_call = per_call
        super().__init__(
            f"Stopped after {done:,} of {total:,} model calls: at {per_call * 1000:.0f} ms per call the run would "
            f"outlast its {slot_s} s GPU slot. Nothing was saved. The next run's slot is sized from this "
            f"measurement; or lower T, r or the samples."
        )


class Stopped(ServeError):
    """The visitor pressed Stop during the run."""
