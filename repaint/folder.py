"""Folder mode: inpaint every image of a folder, the way RePaint's paper evaluation does, in one or many processes.

    python -m repaint --image-dir gts/ --mask-dir masks/ --keep-mask --out-dir out/
    accelerate launch --multi_gpu --num_processes 4 -m repaint --image-dir gts/ --preset thick --out-dir out/

``OUT`` is laid out as RePaint's ``test.py`` writes it (the ``paths`` of its YAML files):
``inpainted/<stem>.png`` (``<stem>-<i>.png`` with several samples), ``gt_masked/`` (the known pixels, the region to
fill black), ``gt/`` (the input fitted to the model) and ``gt_keep_mask/`` (white = keep), all ``<stem>.png``, plus
``manifest.jsonl``: one JSON line per inpainted file with its input, mask, seed, settings and time.

- Each output's seed is a hash of the run's seed, the image's stem and the sample index (:func:`image_seed`), and
  the sampler draws each sample from its own generator, so an output does not depend on the order of the images,
  the batch it ran in or the number of processes.
- Files are written under a temporary name and renamed (``os.replace``), the manifest line after the files, with
  their SHA-256. A run started again skips every output whose manifest line has the same settings (everything
  that changes the pixels: the model's weights, dtype and device type included) and inputs, and whose files still
  hold the bytes that line names. Before it samples, a run deletes every other file of the four folders and every
  other manifest line, so after any sequence of runs and kills the folders and the manifest hold only outputs of
  the latest settings (once a run is through: exactly its outputs).
- A random preset (:data:`repaint.masks.RANDOM`) draws each sample's mask from that sample's seed; its masked
  input and keep mask are then per sample too, named as the output (``gt_masked/<stem>-<i>.png``).
- With ``accelerate launch`` (optional: ``pip install 'repaint[folder]'``) the pending outputs are split between the
  processes (``PartialState.split_between_processes``); each process appends to its own ``manifest.part-<rank>.jsonl``
  and the main process merges them into ``manifest.jsonl`` at the start and the end of a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .images import save_png
from .masks import PRESETS, is_random
from .models import Inpainter
from .schedule import jump_schedule

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUT",
    "MANIFEST",
    "Job",
    "SingleProcess",
    "Summary",
    "image_seed",
    "inpaint_folder",
    "gather",
    "list_images",
    "pair_jobs",
    "process_device",
    "process_state",
    "read_manifest",
]

#: Files read as images from an image or mask folder (others are ignored).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Output folders, in RePaint's names: results, masked input, fitted input, keep mask.
LAYOUT = ("inpainted", "gt_masked", "gt", "gt_keep_mask")
MANIFEST = "manifest.jsonl"
_PART = "manifest.part-{}.jsonl"


@dataclass(frozen=True)
class Job:
    """One input image and its mask: a mask file, or a preset name."""

    name: str  # the image's stem: names its outputs and enters its seed
    image: Path
    mask: Path | str


@dataclass(frozen=True)
class _Unit:
    """One output file: a sample of a job."""

    job: Job
    sample: int
    seed: int
    output: str  # path relative to OUT, e.g. inpainted/000001-2.png
    companions: tuple[str, str, str]  # its gt_masked/, gt/ and gt_keep_mask/ files, relative to OUT

    @property
    def files(self) -> tuple[str, ...]:
        return (self.output, *self.companions)


@dataclass
class Summary:
    """What one call of :func:`inpaint_folder` did in this process."""

    written: list[str] = field(default_factory=list)  # outputs written, relative to OUT
    done_before: int = 0  # outputs already complete (resumed run)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason), reported and skipped


def image_seed(run_seed: int, name: str, sample: int = 0) -> int:
    """The seed of sample ``sample`` of image ``name``: the first 63 bits of SHA-256 of the three.

    A pure function of its arguments, so an output's noise does not depend on order, batch or process count.
    """
    digest = hashlib.sha256(f"{int(run_seed)}\0{name}\0{int(sample)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (by extension, :data:`IMAGE_EXTENSIONS`), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def pair_jobs(image_dir, mask_dir=None, preset: str | None = None, pair: str = "name"):
    """The jobs of a run and the inputs that cannot run: ``(jobs, [(path, reason), ...])``.

    Each image is paired with the mask file of the same stem (``pair="name"``), or with the mask at its position in
    sorted order (``pair="order"``, as RePaint's own data loader does), or with the preset ``preset``.
    """
    if (mask_dir is None) == (preset is None):
        raise ValueError("give either a mask folder or a preset")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown mask preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if pair not in ("name", "order"):
        raise ValueError(f"pair must be 'name' or 'order', got {pair!r}")
    imgs, problems, jobs, seen = list_images(image_dir), [], [], set()
    if preset is not None:
        masks_for = dict.fromkeys(imgs, preset)
    elif pair == "order":
        mask_files = list_images(mask_dir)
        if len(mask_files) != len(imgs):
            problems.append(
                (
                    str(mask_dir),
                    f"{len(mask_files)} masks for {len(imgs)} images: paired by order, "
                    f"the last {abs(len(mask_files) - len(imgs))} are left out",
                )
            )
        masks_for = dict(zip(imgs, mask_files))
    else:
        by_stem: dict[str, Path] = {}
        for m in list_images(mask_dir):
            by_stem.setdefault(m.stem, m)
        masks_for = {p: by_stem[p.stem] for p in imgs if p.stem in by_stem}
    for p in imgs:
        if p not in masks_for:
            problems.append((str(p), f"no mask named {p.stem}.* in {mask_dir}"))
        elif p.stem in seen:
            problems.append((str(p), f"another image has the stem {p.stem!r}; outputs are named by stem"))
        else:
            seen.add(p.stem)
            jobs.append(Job(p.stem, p, masks_for[p]))
    return jobs, problems


# --- processes ---------------------------------------------------------------------------------------------------


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


# --- files --------------------------------------------------------------------------------------------------------


# Every change this module makes to OUT goes through the four functions below (the fault-injection tests interrupt
# a run at each of their calls).


def _atomic_save(array: np.ndarray, path: Path) -> str:
    """Write a PNG under a temporary name in the same folder, then rename it: never a half-written file.
    Returns the SHA-256 of the bytes written."""
    buf = io.BytesIO()
    save_png(array, buf)
    data = buf.getvalue()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def _append(path: Path, record: dict) -> None:
    """One manifest line, flushed to disk before the next output starts."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_manifest(out: Path, records: dict[str, dict]) -> None:
    """``manifest.jsonl`` replaced at once by ``records``, one line per output, sorted."""
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps(records[k], sort_keys=True) + "\n" for k in sorted(records)), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_lines(path: Path) -> list[dict]:
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
    for path in [out / MANIFEST, *sorted(out.glob(_PART.format("*")))]:
        for rec in _read_lines(path):
            latest[rec["output"]] = rec
    return latest


def _merge_manifest(out: Path, keep: set[str] | None = None) -> None:
    """Main process: fold the parts into ``manifest.jsonl`` and drop them. With ``keep`` (the start of a run), only
    the lines of those outputs stay, and every other file of the four folders (a stale output, companion or
    temporary file) is deleted: the manifest first, so no line ever names a deleted file as done."""
    records = read_manifest(out)
    parts = sorted(out.glob(_PART.format("*")))
    if keep is not None:
        records = {k: v for k, v in records.items() if k in keep}
    if parts or (out / MANIFEST).exists():
        _write_manifest(out, records)
    for p in parts:
        _remove(p)
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
                _remove(p)


# --- the run ------------------------------------------------------------------------------------------------------


def _units(jobs: list[Job], seed: int, num_samples: int, own_masks: bool) -> list[_Unit]:
    """Every output of a run. ``own_masks`` (a random preset): each sample has its own mask, so its own masked input
    and keep mask, named as the output."""
    units = []
    for j in jobs:
        for i in range(num_samples):
            name = j.name if num_samples == 1 else f"{j.name}-{i}"
            m = name if own_masks else j.name
            units.append(
                _Unit(
                    j,
                    i,
                    image_seed(seed, j.name, i),
                    f"inpainted/{name}.png",
                    (f"gt_masked/{m}.png", f"gt/{j.name}.png", f"gt_keep_mask/{m}.png"),
                )
            )
    return units


def _digests(job: Job) -> dict:
    """SHA-256 of the input files, so a resumed run redoes an output whose input changed."""
    d = {"image_sha256": _sha256(job.image)}
    if isinstance(job.mask, Path):
        d["mask_sha256"] = _sha256(job.mask)
    return d


def _is_done(
    out: Path, unit: _Unit, record: dict | None, settings: dict, digests: dict, hashes: dict[str, str | None]
) -> bool:
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
            hashes[f] = _sha256(out / f) if (out / f).is_file() else None
        if hashes[f] is None or hashes[f] != named[f]:
            return False
    return True


def _companions(rgb: np.ndarray, fill: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RePaint's companion files, as :data:`LAYOUT` orders them: the masked input (region black), the input, the keep
    mask (white = keep)."""
    keep = np.repeat(~fill[..., None], 3, axis=2)
    return np.where(keep, rgb, 0).astype(np.uint8), rgb, (keep * 255).astype(np.uint8)


def inpaint_folder(
    pipe: Inpainter,
    image_dir,
    out_dir,
    *,
    mask_dir=None,
    preset: str | None = None,
    keep_mask: bool = False,
    invert: bool = False,
    pair: str = "name",
    steps: int = 250,
    jump_length: int = 10,
    jump_n_sample: int = 10,
    seed: int = 0,
    num_samples: int = 1,
    batch_size: int = 1,
    class_label=None,
    classifier_scale=None,
    state=None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> Summary:
    """Inpaint every image of ``image_dir`` into ``out_dir`` (see the module docstring for layout and guarantees).

    ``mask_dir`` (mask files, white = fill; ``keep_mask=True`` for RePaint's white = keep) or ``preset`` (a mask
    preset; a random one draws each sample's mask from that sample's seed). ``classifier_scale``: classifier
    guidance (default: 1 for a model with a classifier, else 0; :meth:`Inpainter.inpaint`). Up to ``batch_size``
    outputs run in one batched sampler call. ``state``: ``accelerate.PartialState`` (or :func:`process_state`) to
    split the work between processes; every process must call this with the same arguments. Bad inputs are reported
    through ``report`` (default: stderr) and skipped. Returns this process's :class:`Summary`.
    """
    from tqdm import tqdm

    state = state or SingleProcess()
    steps, jump_length, jump_n_sample, seed, num_samples = pipe.check_settings(
        steps, jump_length, jump_n_sample, seed, num_samples
    )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = Path(out_dir)
    summary = Summary()
    log = report or (lambda s: tqdm.write(s, file=sys.stderr))

    def skip(path, reason):
        summary.failed.append((str(path), reason))
        log(f"skipped {path}: {reason}")

    for given in (image_dir, mask_dir):
        if given is not None and any(Path(given).resolve() == (out / d).resolve() for d in LAYOUT):
            raise ValueError(f"{given} is an output folder of {out}: a run deletes what it did not write there")
    jobs, problems = pair_jobs(image_dir, mask_dir, preset, pair)
    # Everything that changes an output's pixels; the batch size and the process count do not (a README promise).
    settings = dict(
        model=pipe.name,
        model_sha256=pipe.fingerprint(),
        resolution=pipe.resolution,
        dtype=str(pipe.dtype).removeprefix("torch."),
        device=pipe.device.type,
        steps=steps,
        jump_length=jump_length,
        jump_n_sample=jump_n_sample,
        seed=seed,
        keep_mask=bool(keep_mask),
        invert=bool(invert),
        mask=f"preset:{preset}" if preset is not None else "file",
        pair=pair,
        repaint=__version__,
    )
    pipe.class_labels([seed], class_label)  # a ValueError now for a label an unconditional model cannot take
    if class_label is not None:
        settings["class_label"] = int(class_label)
    scale = pipe.check_scale(classifier_scale)
    if pipe.classifier is not None:
        settings["classifier_scale"] = scale
    own_masks = is_random(preset)
    units = _units(jobs, seed, num_samples, own_masks)

    digests: dict[Job, dict | None] = {}  # SHA-256 of each job's input files; None: unreadable

    def plan() -> tuple[list[_Unit], list[_Unit]]:  # (done, pending); every process reaches the same answer
        records, hashes, done, pending = read_manifest(out), {}, [], []
        for unit in units:
            if unit.job not in digests:
                try:
                    digests[unit.job] = _digests(unit.job)
                except OSError as e:
                    digests[unit.job] = None
                    if state.is_main_process:
                        skip(unit.job.image, f"cannot read: {e}")
            if digests[unit.job] is not None:
                complete = _is_done(out, unit, records.get(unit.output), settings, digests[unit.job], hashes)
                (done if complete else pending).append(unit)
        return done, pending

    if state.is_main_process:
        for path, reason in problems:
            skip(path, reason)
        for d in LAYOUT:
            (out / d).mkdir(parents=True, exist_ok=True)
        _merge_manifest(out)  # parts of a killed run, whatever its process count
        done, pending = plan()
        summary.done_before = len(done)
        # Only complete outputs of these settings stay: stale files and lines go before anything is sampled.
        _merge_manifest(out, keep={u.output for u in done})
    state.wait_for_everyone()  # the folder is clean before anyone reads or appends
    if not state.is_main_process:
        pending = plan()[1]
    state.wait_for_everyone()  # everyone has read the manifest before anyone appends to it

    part = out / _PART.format(state.process_index)
    schedule = jump_schedule(steps, jump_length, jump_n_sample)
    calls = pipe.model_calls(steps, jump_length, jump_n_sample)
    bad: set[Job] = set()  # inputs of this process that failed to read
    with state.split_between_processes(pending) as mine:
        bar = tqdm(
            total=len(mine),
            unit="img",
            file=sys.stderr,
            disable=not progress or not state.is_main_process,
            desc=f"RePaint {pipe.name}" + (f" (process 0 of {state.num_processes})" if state.num_processes > 1 else ""),
        )
        for start in range(0, len(mine), batch_size):
            batch, fitted = [], {}
            for unit in mine[start : start + batch_size]:
                key = (unit.job, unit.seed if own_masks else None)  # a random preset: a mask per sample
                if key not in fitted and unit.job not in bad:
                    try:
                        fitted[key] = pipe.prepare(
                            unit.job.image, unit.job.mask, keep_mask=keep_mask, invert=invert, seed=unit.seed
                        )
                    except (ValueError, OSError) as e:
                        bad.add(unit.job)
                        skip(unit.job.image, str(e))
                if unit.job in bad:
                    bar.update(1)
                else:
                    batch.append((unit, fitted[key]))
            if not batch:
                continue
            began = time.perf_counter()
            tick = lambda k, levels, x, x0: bar.set_postfix_str(f"call {k + 1}/{calls}")  # noqa: E731
            seeds = [u.seed for u, _ in batch]
            result = pipe.sample(
                np.stack([rgb for _, (rgb, _) in batch]),
                np.stack([m for _, (_, m) in batch]),
                [schedule] * len(batch),
                seeds,
                tick,
                class_labels=pipe.class_labels(seeds, class_label),
                classifier_scale=scale,
            )
            seconds = (time.perf_counter() - began) / len(batch)
            saved: dict[str, str] = {}  # this batch's companion files and their SHA-256
            for (unit, fit), img in zip(batch, result):
                for path, arr in zip(unit.companions, _companions(*fit)):
                    if path not in saved:
                        saved[path] = _atomic_save(arr, out / path)
                files = {unit.output: _atomic_save(img, out / unit.output)} | {p: saved[p] for p in unit.companions}
                _append(
                    part,
                    dict(
                        output=unit.output,
                        input=str(unit.job.image),
                        mask=str(unit.job.mask),
                        sample=unit.sample,
                        seed=unit.seed,
                        settings=settings,
                        seconds=round(seconds, 4),
                        batch=len(batch),
                        process=state.process_index,
                        model_calls=calls,
                        files=files,
                        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        **digests[unit.job],
                    ),
                )
                summary.written.append(unit.output)
                bar.update(1)
        bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        _merge_manifest(out)
    state.wait_for_everyone()
    return summary


def process_device(requested: str | None, state):
    """This process's device: accelerate's (cuda:<local rank> under a multi-GPU launch) unless one is named."""
    import torch

    own = getattr(state, "device", None)
    if own is None or (requested is not None and torch.device(requested) != torch.device(own.type)):
        return requested
    return "cpu" if own.type == "cpu" else own
