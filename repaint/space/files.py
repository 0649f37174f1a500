"""Result files: one folder per run, written fast and losslessly, swept when a crash leaves one behind."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from ..images import save_png

log = logging.getLogger(__name__)

# Result files go here, one folder per run, deleted as soon as the server has copied them; folders left by a crash
# are swept after RESULTS_MAX_AGE_S.
RESULTS_DIR = Path(tempfile.gettempdir()) / "repaint_results"
RESULTS_MAX_AGE_S = 3600
# zlib level of the result PNGs (lossless at every level): a 12 MP photo takes 3.7 s at 1 and 18 s at PIL's default
# 6 on this machine, for files within 10% of each other
PNG_LEVEL = 1


def new_results_dir(root: Path = RESULTS_DIR) -> Path:
    """A fresh folder for one run's files under ``root`` (old ones swept first)."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_results(root)
    return Path(tempfile.mkdtemp(prefix="run_", dir=root))


def sweep_results(root: Path = RESULTS_DIR, max_age_s: float = RESULTS_MAX_AGE_S) -> int:
    """Deletes result folders older than ``max_age_s`` (left by a crash or a closed server); how many."""
    if not root.is_dir():
        return 0
    n, now = 0, time.time()
    for d in root.iterdir():
        try:
            if d.name.startswith("run_") and now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        except OSError:
            pass
    return n


def save_results(out_dir: Path, prefix: str, res, plain, jump_n_sample: int, seed: int) -> list[tuple[str, str]]:
    """Writes the n=r results, then the n=1 results, as PNGs: (path, caption) pairs, sample i with seed + i."""
    saved = []
    for n, arrays in ((jump_n_sample, res), (1, plain)):
        for i, a in enumerate(arrays):
            path = out_dir / f"{prefix}n{n}_seed{seed + i}.png"
            save_png(a, path, PNG_LEVEL)
            saved.append((str(path), f"n={n}, seed {seed + i}"))
    return saved
