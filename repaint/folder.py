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

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, manifest
from .manifest import LAYOUT, MANIFEST, read_manifest
from .masks import PRESETS, is_random
from .pipeline import Inpainter
from .processes import SingleProcess, gather, process_device, process_state
from .schedule import jump_schedule
from .settings import Settings

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
    "run_folder",
]

#: Files read as images from an image or mask folder (others are ignored).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


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


def _sha256s(job: Job) -> dict:
    """SHA-256 of the input files, so a resumed run redoes an output whose input changed."""
    d = {"image_sha256": manifest.sha256(job.image)}
    if isinstance(job.mask, Path):
        d["mask_sha256"] = manifest.sha256(job.mask)
    return d


def _pixel_settings(pipe: Inpainter, s: Settings, mask: str, keep_mask: bool, invert: bool, pair: str) -> dict:
    """Everything that changes an output's pixels, as its manifest line records it; the batch size and the process
    count do not change them (a README promise)."""
    settings = dict(
        model=pipe.name,
        model_sha256=pipe.fingerprint(),
        resolution=pipe.resolution,
        dtype=str(pipe.dtype).removeprefix("torch."),
        device=pipe.device.type,
        steps=s.steps,
        jump_length=s.jump_length,
        jump_n_sample=s.jump_n_sample,
        seed=s.seed,
        keep_mask=bool(keep_mask),
        invert=bool(invert),
        mask=mask,
        pair=pair,
        repaint=__version__,
    )
    if s.class_label is not None:
        settings["class_label"] = int(s.class_label)
    if pipe.classifier is not None:
        settings["classifier_scale"] = s.classifier_scale
    return settings


@dataclass
class _FolderRun:
    """One process's part of a folder run: what it plans, fits, samples and writes."""

    pipe: Inpainter
    settings: Settings  # checked
    out: Path
    state: object
    keep_mask: bool
    invert: bool
    own_masks: bool  # a random preset: a mask per sample
    pixels: dict  # _pixel_settings
    log: Callable[[str], None]
    summary: Summary = field(default_factory=Summary)
    digests: dict = field(default_factory=dict)  # SHA-256 of each job's input files; None: unreadable
    bad: set = field(default_factory=set)  # inputs of this process that failed to read

    def skip(self, path, reason: str) -> None:
        self.summary.failed.append((str(path), reason))
        self.log(f"skipped {path}: {reason}")

    def plan(self, units: list[_Unit]) -> tuple[list[_Unit], list[_Unit]]:
        """(done, pending); every process reaches the same answer."""
        records, hashes, done, pending = read_manifest(self.out), {}, [], []
        for unit in units:
            if unit.job not in self.digests:
                try:
                    self.digests[unit.job] = _sha256s(unit.job)
                except OSError as e:
                    self.digests[unit.job] = None
                    if self.state.is_main_process:
                        self.skip(unit.job.image, f"cannot read: {e}")
            if self.digests[unit.job] is not None:
                record = records.get(unit.output)
                complete = manifest.is_done(self.out, unit, record, self.pixels, self.digests[unit.job], hashes)
                (done if complete else pending).append(unit)
        return done, pending

    def start(self, units: list[_Unit], problems: list[tuple[str, str]]) -> list[_Unit]:
        """The outputs still to make. The main process reports the problems and cleans the folder first: only
        complete outputs of these settings stay, stale files and lines go before anything is sampled."""
        if self.state.is_main_process:
            for path, reason in problems:
                self.skip(path, reason)
            for d in LAYOUT:
                (self.out / d).mkdir(parents=True, exist_ok=True)
            manifest.merge_manifest(self.out)  # parts of a killed run, whatever its process count
            done, pending = self.plan(units)
            self.summary.done_before = len(done)
            manifest.merge_manifest(self.out, keep={u.output for u in done})
        self.state.wait_for_everyone()  # the folder is clean before anyone reads or appends
        if not self.state.is_main_process:
            pending = self.plan(units)[1]
        self.state.wait_for_everyone()  # everyone has read the manifest before anyone appends to it
        return pending

    def fit(self, units: list[_Unit], bar) -> list[tuple[_Unit, tuple[np.ndarray, np.ndarray]]]:
        """Each unit with its fitted (image, mask); an input that cannot be read is reported once and skipped."""
        batch, fitted = [], {}
        for unit in units:
            key = (unit.job, unit.seed if self.own_masks else None)
            if key not in fitted and unit.job not in self.bad:
                try:
                    fitted[key] = self.pipe.prepare(
                        unit.job.image, unit.job.mask, keep_mask=self.keep_mask, invert=self.invert, seed=unit.seed
                    )
                except (ValueError, OSError) as e:
                    self.bad.add(unit.job)
                    self.skip(unit.job.image, str(e))
            if unit.job in self.bad:
                bar.update(1)
            else:
                batch.append((unit, fitted[key]))
        return batch

    def record(self, unit: _Unit, files: dict[str, str], seconds: float, batch: int) -> dict:
        """``unit``'s manifest line, once its files (path: SHA-256) are written."""
        return dict(
            output=unit.output,
            input=str(unit.job.image),
            mask=str(unit.job.mask),
            sample=unit.sample,
            seed=unit.seed,
            settings=self.pixels,
            seconds=round(seconds, 4),
            batch=batch,
            process=self.state.process_index,
            model_calls=self.settings.calls,
            files=files,
            finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.digests[unit.job],
        )

    def sample(self, batch, bar) -> None:
        """One batched sampler call for ``batch``, then its files and manifest lines."""
        s, began = self.settings, time.perf_counter()
        seeds = [u.seed for u, _ in batch]
        result = self.pipe.sample(
            np.stack([rgb for _, (rgb, _) in batch]),
            np.stack([m for _, (_, m) in batch]),
            [jump_schedule(s.steps, s.jump_length, s.jump_n_sample)] * len(batch),
            seeds,
            lambda k, *_: bar.set_postfix_str(f"call {k + 1}/{s.calls}"),
            class_labels=self.pipe.class_labels(seeds, s.class_label),
            classifier_scale=s.classifier_scale,
        )
        seconds = (time.perf_counter() - began) / len(batch)
        part = self.out / manifest.PART.format(self.state.process_index)
        saved: dict[str, str] = {}  # this batch's companion files and their SHA-256
        for (unit, fit), img in zip(batch, result):
            for path, arr in zip(unit.companions, manifest.companions(*fit)):
                if path not in saved:
                    saved[path] = manifest.atomic_save(arr, self.out / path)
            files = {unit.output: manifest.atomic_save(img, self.out / unit.output)}
            files |= {p: saved[p] for p in unit.companions}
            manifest.append(part, self.record(unit, files, seconds, len(batch)))
            self.summary.written.append(unit.output)
            bar.update(1)


def run_folder(
    pipe: Inpainter,
    image_dir,
    out_dir,
    settings: Settings,
    *,
    mask_dir=None,
    preset: str | None = None,
    keep_mask: bool = False,
    invert: bool = False,
    pair: str = "name",
    batch_size: int = 1,
    state=None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> Summary:
    """:func:`inpaint_folder` with its sampler settings as one :class:`~repaint.settings.Settings` (its
    ``compare`` is not used here)."""
    from tqdm import tqdm

    state = state or SingleProcess()
    s = pipe.check(settings)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = Path(out_dir)
    for given in (image_dir, mask_dir):
        if given is not None and any(Path(given).resolve() == (out / d).resolve() for d in LAYOUT):
            raise ValueError(f"{given} is an output folder of {out}: a run deletes what it did not write there")
    jobs, problems = pair_jobs(image_dir, mask_dir, preset, pair)
    mask = f"preset:{preset}" if preset is not None else "file"
    run = _FolderRun(
        pipe=pipe,
        settings=s,
        out=out,
        state=state,
        keep_mask=keep_mask,
        invert=invert,
        own_masks=is_random(preset),
        pixels=_pixel_settings(pipe, s, mask, keep_mask, invert, pair),
        log=report or (lambda line: tqdm.write(line, file=sys.stderr)),
    )
    pending = run.start(_units(jobs, s.seed, s.num_samples, run.own_masks), problems)
    with state.split_between_processes(pending) as mine:
        several = f" (process 0 of {state.num_processes})" if state.num_processes > 1 else ""
        show = progress and state.is_main_process
        with tqdm(
            total=len(mine), unit="img", file=sys.stderr, disable=not show, desc=f"RePaint {pipe.name}{several}"
        ) as bar:
            for start in range(0, len(mine), batch_size):
                if batch := run.fit(mine[start : start + batch_size], bar):
                    run.sample(batch, bar)
    state.wait_for_everyone()
    if state.is_main_process:
        manifest.merge_manifest(out)
    state.wait_for_everyone()
    return run.summary


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
    settings = Settings(
        steps=steps,
        jump_length=jump_length,
        jump_n_sample=jump_n_sample,
        num_samples=num_samples,
        seed=seed,
        class_label=class_label,
        classifier_scale=classifier_scale,
    )
    options = dict(mask_dir=mask_dir, preset=preset, keep_mask=keep_mask, invert=invert, pair=pair)
    options |= dict(batch_size=batch_size, state=state, progress=progress, report=report)
    return run_folder(pipe, image_dir, out_dir, settings, **options)
