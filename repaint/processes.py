"""Folder mode's processes: one, or several under ``accelerate launch`` (``pip install 'repaint[folder]'``)."""

from __future__ import annotations

import contextlib
import os

__all__ = ["SingleProcess", "gather", "process_device", "process_state"]


class SingleProcess:
    """The one process of a run without ``accelerate launch``: the subset of ``accelerate.PartialState`` used here."""

    num_processes, process_index, is_main_process, device = 1, 0, True, None

    def wait_for_everyone(self) -> None:
        pass

    @contextlib.contextmanager
    def split_between_processes(self, inputs):
        yield inputs


def process_state(cpu: bool = False):
    """``accelerate.PartialState`` when accelerate is installed, else :class:`SingleProcess`.

    ``cpu``: processes on the CPU (gloo); accelerate's multi-CPU mode needs it said. A launch of several processes
    without accelerate installed is refused with the command that installs it.
    """
    try:
        from accelerate import PartialState
    except ImportError:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError(
                "several processes need Hugging Face accelerate: pip install 'repaint[folder]' "
                "(or pip install accelerate)"
            ) from None
        return SingleProcess()
    return PartialState(cpu=cpu)


def gather(state, items: list) -> list:
    """The concatenation of ``items`` over all processes (every process gets it)."""
    if state.num_processes == 1:
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))


def process_device(requested: str | None, state):
    """This process's device: accelerate's (cuda:<local rank> under a multi-GPU launch) unless one is named."""
    import torch

    own = getattr(state, "device", None)
    if own is None or (requested is not None and torch.device(requested) != torch.device(own.type)):
        return requested
    return "cpu" if own.type == "cpu" else own
