"""Result files: one folder per run, written fast and losslessly, swept when a crash leaves one behind; and the
editor's image a session keeps, held as a file rather than in the server's memory."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

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
    return sweep_folders(root, max_age_s, prefix="run_")


def sweep_folders(root: Path, max_age_s: float, prefix: str = "") -> int:
    """Deletes the folders in ``root`` whose name starts with ``prefix``, last changed more than ``max_age_s``
    ago; how many."""
    if not root.is_dir():
        return 0
    n, now = 0, time.time()
    for d in root.iterdir():
        try:
            if d.name.startswith(prefix) and now - d.stat().st_mtime > max_age_s:
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


# The editor's image a session keeps for its runs (app.py's ``shown``), as a file here: a session holds a small dict,
# not a full-size array in the server's memory. Its gr.State deletes the file when the session ends or its
# time-to-live passes (release); a session replacing its image deletes the old one; past HELD_BYTES_MAX in all, the
# oldest files go first (their session, should it run again without sending its image, is asked for it).
HELD_DIR = Path(tempfile.gettempdir()) / "repaint_held"
HELD_BYTES_MAX = 4 * 2**30
SESSION_TTL_S = 3600  # what a session keeps, kept this long after it last changed (Gradio keeps a closed one an hour)


def hold(array: np.ndarray, key, root: Path = HELD_DIR, bytes_max: int = HELD_BYTES_MAX) -> dict:
    """``array`` written to a file of its own under ``root``: {"path", "key"} (``key``: what it is, for comparing
    without reading it), the oldest files deleted while all of them take more than ``bytes_max``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{uuid.uuid4().hex}.npy"
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    stats = {f: (st.st_size, st.st_mtime) for f in root.glob("*.npy") if (st := _stat(f)) is not None}
    for old in oldest_over(stats, bytes_max, keep=path):
        old.unlink(missing_ok=True)
    return {"path": str(path), "key": key}


def oldest_over(entries: dict[Path, tuple[int, float]], bytes_max: int, keep: Path | None = None) -> list[Path]:
    """Which of ``entries`` (path -> (bytes, time last used)) to delete, the oldest first, for the rest to take at
    most ``bytes_max`` in all; never ``keep``."""
    total, out = sum(size for size, _ in entries.values()), []
    for path in sorted(entries, key=lambda p: entries[p][1]):
        if total <= bytes_max:
            break
        if path != keep:
            total -= entries[path][0]
            out.append(path)
    return out


def held(value, root: Path = HELD_DIR) -> np.ndarray | None:
    """The array :func:`hold` kept, or None (none held, or deleted since)."""
    path = _held_path(value, root)
    try:
        return None if path is None else np.load(path, allow_pickle=False)
    except OSError:
        return None


def release(value, root: Path = HELD_DIR) -> None:
    """Deletes what :func:`hold` kept (a state's delete_callback); anything else is left alone."""
    path = _held_path(value, root)
    if path is not None:
        path.unlink(missing_ok=True)


def _held_path(value, root: Path) -> Path | None:
    path = Path(value["path"]) if isinstance(value, dict) and isinstance(value.get("path"), str) else None
    return path if path is not None and path.parent == root and path.suffix == ".npy" else None


def _stat(path: Path):
    """``path``'s stat, or None once it is gone (another session's hold deleted it)."""
    try:
        return path.stat()
    except OSError:
        return None


# Gradio (6.31.0) saves a session's inputs for its deep-link route (/gradio_api/deep_link) under the upload folder's
# deep_links/, outside the files its delete_cache sweeps: swept here on the same schedule.
_sweeping: set[str] = set()


def sweep_deep_links(upload_folder: str, max_age_s: float) -> int:
    """Deletes the deep links saved under ``upload_folder`` more than ``max_age_s`` ago; how many."""
    return sweep_folders(Path(upload_folder) / "deep_links", max_age_s)


def sweep_deep_links_on_schedule(upload_folder: str, every_s: float, max_age_s: float) -> None:
    """Every ``every_s``, :func:`sweep_deep_links` (one thread per folder, for the process's life)."""
    if upload_folder in _sweeping:
        return
    _sweeping.add(upload_folder)

    def sweep():
        pause = threading.Event()  # never set (not time.sleep, which a test may patch)
        while not pause.wait(every_s):
            sweep_deep_links(upload_folder, max_age_s)

    threading.Thread(target=sweep, daemon=True, name="repaint-deep-links").start()
