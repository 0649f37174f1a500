"""Folder mode's files: PNGs written atomically, the manifest (one JSON line per output) and what it vouches for."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .images import save_png

__all__ = ["LAYOUT", "MANIFEST", "PART", "read_manifest"]

#: Output folders, in RePaint's names: results, masked input, fitted input, keep mask.
LAYOUT = ("inpainted", "gt_masked", "gt", "gt_keep_mask")
MANIFEST = "manifest.jsonl"
PART = "manifest.part-{}.jsonl"  # one process's lines during a run, merged into MANIFEST by the main process


# Every change folder mode makes to OUT goes through the four functions below (the fault-injection tests interrupt
# a run at each of their calls).


def atomic_save(array: np.ndarray, path: Path) -> str:
    """Write a PNG under a temporary name in the same folder, then rename it: never a half-written file.
    Returns the SHA-256 of the bytes written."""
    buf = io.BytesIO()
    save_png(array, buf)
    data = buf.getvalue()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def append(path: Path, record: dict) -> None:
    """One manifest line, flushed to disk before the next output starts."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_manifest(out: Path, records: dict[str, dict]) -> None:
    """``manifest.jsonl`` replaced at once by ``records``, one line per output, sorted."""
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps(records[k], sort_keys=True) + "\n" for k in sorted(records)), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_lines(path: Path) -> list[dict]:
    """JSON objects of a JSONL file; a line cut by a killed process (or otherwise unreadable) is left out."""
    records = []
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError):
                rec = json.loads(line)
                if isinstance(rec, dict) and isinstance(rec.get("output"), str):
                    records.append(rec)
    return records


def read_manifest(out_dir: str | Path) -> dict[str, dict]:
    """The latest manifest record of each output (``manifest.jsonl``, then the per-process parts, in order)."""
    out = Path(out_dir)
    latest: dict[str, dict] = {}
    for path in [out / MANIFEST, *sorted(out.glob(PART.format("*")))]:
        for rec in read_lines(path):
            latest[rec["output"]] = rec
    return latest


def merge_manifest(out: Path, keep: set[str] | None = None) -> None:
    """Main process: fold the parts into ``manifest.jsonl`` and drop them. With ``keep`` (the start of a run), only
    the lines of those outputs stay, and every other file of the four folders (a stale output, companion or
    temporary file) is deleted: the manifest first, so no line ever names a deleted file as done."""
    records = read_manifest(out)
    parts = sorted(out.glob(PART.format("*")))
    if keep is not None:
        records = {k: v for k, v in records.items() if k in keep}
    if parts or (out / MANIFEST).exists():
        write_manifest(out, records)
    for p in parts:
        remove(p)
    if keep is None:
        return
    files = {f for rec in records.values() for f in rec["files"]}
    for folder in LAYOUT:
        for p in sorted((out / folder).iterdir()):
            if (
                p.is_file()
                and (p.suffix.lower() == ".png" or p.name.endswith(".tmp"))
                and f"{folder}/{p.name}" not in files
            ):
                remove(p)


def is_done(out: Path, unit, record: dict | None, settings: dict, digests: dict, hashes: dict[str, str | None]) -> bool:
    """Whether ``unit``'s manifest line has these settings, seed and input digests, and its files still hold the
    bytes the line names (``hashes``: a cache of the files' SHA-256, None for a missing file)."""
    if record is None or record.get("settings") != settings or record.get("seed") != unit.seed:
        return False
    if any(record.get(k) != v for k, v in digests.items()):
        return False
    named = record.get("files")
    if not isinstance(named, dict) or set(named) != set(unit.files):
        return False
    for f in unit.files:
        if f not in hashes:
            hashes[f] = sha256(out / f) if (out / f).is_file() else None
        if hashes[f] is None or hashes[f] != named[f]:
            return False
    return True


def companions(rgb: np.ndarray, fill: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RePaint's companion files, as :data:`LAYOUT` orders them: the masked input (region black), the input, the keep
    mask (white = keep)."""
    keep = np.repeat(~fill[..., None], 3, axis=2)
    return np.where(keep, rgb, 0).astype(np.uint8), rgb, (keep * 255).astype(np.uint8)
