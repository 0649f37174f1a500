"""Memory figures: a process's from /proc (Linux), a device's free memory, and the peak one call takes. The crowd's
rows per model call are sized from the last two (:func:`repaint.crowd.sized_rows`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["free_bytes", "memory_mb", "peak_bytes", "reset_peak"]


def memory_mb(pid: int | str, field: str) -> float:
    """A memory figure of process ``pid`` ("self": this one) from /proc: VmRSS (resident now), VmHWM (its peak)."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) / 1024  # kB to MB


def reset_peak(pid: int | str) -> float:
    """Resets the peak resident set (VmHWM) of process ``pid`` to its current one (Linux: 5 written to clear_refs);
    returns that, in MB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory_mb(pid, "VmRSS")


def free_bytes(device: torch.device) -> int | None:
    """The memory free for new tensors on ``device``: the GPU's free memory (``torch.cuda.mem_get_info``), on a CPU
    the system's available memory (MemAvailable, /proc/meminfo); None where neither can be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


def peak_bytes(call: Callable[[], object], device: torch.device) -> int | None:
    """The most memory ``call()`` held at once above what was held before it: on a GPU torch's allocator's peak,
    on a CPU the process's peak resident set (VmHWM, reset before; Linux). None where it cannot be read. On a CPU
    the whole process counts: another thread's allocations meanwhile make it larger, never smaller."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    try:
        before = reset_peak("self")
    except OSError:
        return None
    call()
    return max(0, round((memory_mb("self", "VmHWM") - before) * 2**20))
