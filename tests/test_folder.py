"""Folder mode (repaint.folder): layout, per-image seeds, resuming, bad files, and several processes (accelerate)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import assert_same_run
from PIL import Image

from repaint import faces, folder, manifest, masks
from repaint.__main__ import main
from repaint.models import load

pytestmark = pytest.mark.usefixtures("one_thread")  # the bundled model, in this process: see conftest.py

REPO = Path(__file__).resolve().parents[1]
KW = dict(steps=4, jump_length=2, jump_n_sample=2)  # 6 model calls per image
CLI_KW = ["--steps", "4", "--jump-length", "2", "--jump-n-sample", "2"]


def make_inputs(root: Path, n: int = 5) -> tuple[Path, Path]:
    """n faces at 40x32 (so fitting crops them) and RePaint-style keep masks of the same names (white = keep)."""
    img_dir, mask_dir = root / "gts", root / "keep_masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir()
    for i, face in enumerate(faces.make_faces(n, 7, 32)):
        wide = np.concatenate([face[:, :4], face, face[:, -4:]], axis=1)  # 40 wide: the centre crop gives face back
        Image.fromarray(wide).save(img_dir / f"{i:05d}.png")
        keep = ~masks.preset("thick", 32, 40, seed=i)
        Image.fromarray(keep.astype(np.uint8) * 255).save(mask_dir / f"{i:05d}.png")
    return img_dir, mask_dir


def pngs(folder_path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder_path)): p.read_bytes() for p in sorted(folder_path.glob("*/*.png"))}


def arr(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_image_seed_is_a_hash_of_seed_name_and_sample():
    seeds = {folder.image_seed(s, n, i) for s in (0, 1) for n in ("a", "b") for i in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert folder.image_seed(3, "x", 1) == folder.image_seed(3, "x", 1)


def test_layout_matches_the_inputs_and_the_single_image_path(bundled, tmp_path):
    img_dir, mask_dir = make_inputs(tmp_path, 3)
    out = tmp_path / "out"
    s = folder.inpaint_folder(
        bundled, img_dir, out, mask_dir=mask_dir, keep_mask=True, batch_size=2, seed=5, progress=False, **KW
    )
    assert sorted(s.written) == [f"inpainted/{i:05d}.png" for i in range(3)] and not s.failed
    for i in range(3):
        name = f"{i:05d}.png"
        face = faces.make_faces(3, 7, 32)[i]
        keep = ~masks.preset("thick", 32, 40, seed=i)[:, 4:36]  # the centre crop of the mask file
        assert np.array_equal(arr(out / "gt" / name), face)
        assert np.array_equal(arr(out / "gt_keep_mask" / name), np.repeat(keep[..., None] * np.uint8(255), 3, 2))
        assert np.array_equal(arr(out / "gt_masked" / name), np.where(keep[..., None], face, 0))
        got = arr(out / "inpainted" / name)
        assert np.array_equal(got[keep], face[keep])  # known pixels exact
        assert all(Image.open(out / d / name).info.get("srgb") == 0 for d in folder.LAYOUT)  # tagged sRGB
        # The same output as the one-image API with the image's seed: batching changes nothing.
        (alone,) = bundled.inpaint(
            img_dir / name, mask_dir / name, keep_mask=True, seed=folder.image_seed(5, name[:-4]), **KW
        )
        assert np.array_equal(got, np.asarray(alone))
    lines = [json.loads(x) for x in (out / folder.MANIFEST).read_text().splitlines()]
    assert [x["output"] for x in lines] == [f"inpainted/{i:05d}.png" for i in range(3)]
    assert lines[1]["seed"] == folder.image_seed(5, "00001") and lines[1]["settings"]["steps"] == 4
    assert lines[1]["model_calls"] == bundled.model_calls(**KW) and lines[1]["mask"] == str(mask_dir / "00001.png")


def test_outputs_do_not_depend_on_order_batch_or_subset(bundled, tmp_path):
    img_dir, _ = make_inputs(tmp_path, 4)
    folder.inpaint_folder(
        bundled, img_dir, tmp_path / "all", preset="wide", batch_size=3, num_samples=2, progress=False, **KW
    )
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(img_dir / "00002.png", one / "00002.png")
    folder.inpaint_folder(
        bundled, one, tmp_path / "alone", preset="wide", batch_size=1, num_samples=2, progress=False, **KW
    )
    both = pngs(tmp_path / "all")
    assert len(both) == 4 * 2 * 3 + 4  # a random preset: per sample an output, a masked input and a keep mask
    for key, data in pngs(tmp_path / "alone").items():
        assert both[key] == data, key
    a, b = arr(tmp_path / "all/inpainted/00002-0.png"), arr(tmp_path / "all/inpainted/00002-1.png")
    assert not np.array_equal(a, b)  # two samples, two seeds


@pytest.mark.parametrize("preset", ["thick", "wide", "center_box"])
def test_sample_i_is_the_api_run_with_its_seed_and_its_own_mask(bundled, tmp_path, preset):
    """Folder mode's "sample i equals a run alone with its seed": output i of an image is the one-image API's result
    with seed image_seed(seed, stem, i), random presets included (each sample its own mask, drawn from that seed),
    and the masked input and keep mask written beside it are those of its own mask."""
    img_dir, _ = make_inputs(tmp_path, 2)
    out = tmp_path / "out"
    folder.inpaint_folder(
        bundled, img_dir, out, preset=preset, num_samples=3, batch_size=4, seed=9, progress=False, **KW
    )
    own = preset in masks.RANDOM
    for name in ("00000", "00001"):
        face = arr(out / "gt" / f"{name}.png")
        for i in range(3):
            s = folder.image_seed(9, name, i)
            (alone,) = bundled.inpaint(img_dir / f"{name}.png", preset, seed=s, **KW)
            assert_same_run(arr(out / "inpainted" / f"{name}-{i}.png"), alone)
            keep = ~masks.preset(preset, 32, 32, seed=s)
            companion = f"{name}-{i}.png" if own else f"{name}.png"
            white = np.repeat(keep[..., None] * np.uint8(255), 3, 2)
            assert np.array_equal(arr(out / "gt_keep_mask" / companion), white)
            assert np.array_equal(arr(out / "gt_masked" / companion), np.where(keep[..., None], face, 0))
    assert len(pngs(out)) == 2 * 3 + 2 + (2 * 3 * 2 if own else 2 * 2)


def test_resume_redoes_only_what_is_missing_or_changed(bundled, tmp_path):
    img_dir, mask_dir = make_inputs(tmp_path, 3)
    out = tmp_path / "out"

    def run(**kw):
        return folder.inpaint_folder(
            bundled, img_dir, out, mask_dir=mask_dir, keep_mask=True, progress=False, **{**KW, **kw}
        )

    run()
    first = pngs(out)
    # A killed run: one output missing, a half-written manifest line, a temporary file left behind.
    (out / "inpainted/00001.png").unlink()
    with open(out / "manifest.part-1.jsonl", "w") as f:
        f.write('{"output": "inpainted/00001.png", "sett')
    (out / "inpainted/.00001.png.123.tmp").write_bytes(b"half")
    again = run()
    assert again.written == ["inpainted/00001.png"] and again.done_before == 2
    assert pngs(out) == first
    assert not list(out.glob("manifest.part-*")) and not list(out.glob("*/.*.tmp"))
    assert len((out / folder.MANIFEST).read_text().splitlines()) == 3
    # Other settings, or a changed input, make the outputs stale.
    assert sorted(run(seed=1).written) == [f"inpainted/{i:05d}.png" for i in range(3)]
    shutil.copy(img_dir / "00000.png", img_dir / "00002.png")
    assert run(seed=1).written == ["inpainted/00002.png"]


# --- the promise: after any sequence of runs and kills, the folders and the manifest hold exactly the outputs of the
# latest settings ------------------------------------------------------------------------------------------------

FAST = dict(steps=2, jump_length=1, jump_n_sample=1)  # 2 model calls per batch


def state(out: Path) -> tuple[dict[str, bytes], list[dict]]:
    """Every file under ``out`` but the manifest, and the manifest's lines without their timings."""
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != folder.MANIFEST
    }
    lines = [json.loads(x) for x in (out / folder.MANIFEST).read_text().splitlines()]
    return files, [{k: v for k, v in x.items() if k not in ("seconds", "finished", "batch", "process")} for x in lines]


def assert_lines_tell_the_truth(out: Path) -> None:
    """Every manifest line (merged or a process's part) names files that hold the bytes it says."""
    for rec in folder.read_manifest(out).values():
        for f, digest in rec["files"].items():
            assert (out / f).is_file() and manifest.sha256(out / f) == digest, f


def reference(bundled, img_dir: Path, root: Path, **kw) -> tuple[dict[str, bytes], list[dict]]:
    """The state a clean run with these settings leaves."""
    out = root / f"ref-{len(list(root.glob('ref-*')))}"
    folder.inpaint_folder(bundled, img_dir, out, progress=False, **kw)
    return state(out)


def test_fewer_samples_leave_no_stale_outputs(bundled, tmp_path):
    """The issue's case: --num-samples 2, then 1, into one folder: img.png alone, with one manifest line."""
    img_dir, _ = make_inputs(tmp_path, 1)
    out = tmp_path / "out"
    for n in (2, 1):
        main(
            [
                "--image-dir",
                str(img_dir),
                "--preset",
                "thick",
                "--out-dir",
                str(out),
                "--num-samples",
                str(n),
                "--steps",
                "2",
                "--jump-length",
                "1",
                "--jump-n-sample",
                "1",
            ]
        )
    assert sorted(p.name for p in (out / "inpainted").iterdir()) == ["00000.png"]
    assert sorted(folder.read_manifest(out)) == ["inpainted/00000.png"]
    assert state(out) == reference(bundled, img_dir, tmp_path, preset="thick", **FAST)


def _bfloat16(bundled):
    return load("bundled", device="cpu", dtype="bfloat16")


def _retrained(bundled):
    """The same name, other weights: a local model folder trained on in place."""
    import copy

    unet = copy.deepcopy(bundled.unet)
    with torch.no_grad():
        next(unet.parameters()).add_(0.05)
    return folder.Inpainter(unet, bundled.scheduler_config, bundled.name)


CHANGES = {  # every setting that changes an output's pixels (or its name), from the base run's
    "steps": dict(steps=3),
    "jump_length": dict(steps=4, jump_length=2),
    "jump_n_sample": dict(jump_n_sample=2),
    "seed": dict(seed=1),
    "num_samples": dict(num_samples=2),
    "preset": dict(preset="wide"),
    "mask_dir": dict(preset=None, mask_dir=True),
    "invert": dict(invert=True),
    "dtype": dict(bundled=_bfloat16),
    "weights": dict(bundled=_retrained),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_setting_that_changes_results_redoes_every_output(bundled, tmp_path, change):
    img_dir, mask_dir = make_inputs(tmp_path, 2)
    base = dict(preset="thick", **FAST)
    kw = {**base, **CHANGES[change]}
    other = kw.pop("bundled", lambda p: p)(bundled)
    if kw.pop("mask_dir", False):
        kw["mask_dir"] = mask_dir
    out = tmp_path / "out"
    folder.inpaint_folder(bundled, img_dir, out, progress=False, **base)
    again = folder.inpaint_folder(other, img_dir, out, progress=False, **kw)
    assert again.done_before == 0 and len(again.written) == 2 * kw.get("num_samples", 1)
    assert state(out) == reference(other, img_dir, tmp_path, **kw)
    if change == "mask_dir":  # keep_mask applies to mask files only
        assert folder.inpaint_folder(bundled, img_dir, out, progress=False, keep_mask=True, **kw).done_before == 0


def test_the_batch_size_changes_nothing(bundled, tmp_path):
    img_dir, _ = make_inputs(tmp_path, 3)
    out = tmp_path / "out"
    folder.inpaint_folder(bundled, img_dir, out, preset="thick", batch_size=1, progress=False, **FAST)
    again = folder.inpaint_folder(bundled, img_dir, out, preset="thick", batch_size=3, progress=False, **FAST)
    assert again.done_before == 3 and not again.written


class Killed(BaseException):
    """The process dying at a write (a BaseException: nothing in the code under test may catch it)."""


@contextlib.contextmanager
def killed_at(at: int | None):
    """Every write to OUT goes through folder's four write functions; the ``at``-th call (from 0) dies before it
    writes, leaving what a kill leaves: a torn manifest line, a temporary file. Yields the list of calls made."""
    calls = []

    def hook(name, fn):
        def hooked(*a):
            calls.append(name)
            if len(calls) - 1 == at:
                if name == "append":
                    with open(a[0], "a") as f:
                        f.write(json.dumps(a[1])[:50])
                elif name == "atomic_save":
                    a[1].with_name(f".{a[1].name}.999.tmp").write_bytes(b"half a png")
                raise Killed
            return fn(*a)

        return hooked

    with pytest.MonkeyPatch.context() as mp:
        for name in ("atomic_save", "append", "write_manifest", "remove"):
            mp.setattr(manifest, name, hook(name, getattr(manifest, name)))
        yield calls


@pytest.mark.parametrize("to", ["same_names", "fewer_samples"])
def test_a_run_killed_at_any_write_then_rerun_leaves_exactly_the_latest_settings(bundled, tmp_path, to):
    """From a complete run with settings A, a run with B is killed at each of its writes in turn; rerun with B, the
    folder is a clean B run's, byte for byte; rerun with A instead, a clean A run's. At every kill, each manifest line
    names files that hold its bytes (no line vouches for a stale file). One image, two samples."""
    img_dir, _ = make_inputs(tmp_path, 1)
    a = dict(preset="thick", num_samples=2, batch_size=2, **FAST)
    b = dict(a, steps=3) if to == "same_names" else dict(a, num_samples=1)
    start = tmp_path / "a"
    folder.inpaint_folder(bundled, img_dir, start, progress=False, **a)
    ref_a, ref_b = state(start), reference(bundled, img_dir, tmp_path, **b)
    counted = tmp_path / "counted"
    shutil.copytree(start, counted)
    with killed_at(None) as calls:
        folder.inpaint_folder(bundled, img_dir, counted, progress=False, **b)
    assert {"atomic_save", "append", "write_manifest", "remove"} <= set(calls), calls
    for k in range(len(calls)):
        run = tmp_path / f"k{k}"
        shutil.copytree(start, run)
        with killed_at(k), pytest.raises(Killed):
            folder.inpaint_folder(bundled, img_dir, run, progress=False, **b)
        assert_lines_tell_the_truth(run)
        back = tmp_path / f"k{k}-back"
        shutil.copytree(run, back)
        folder.inpaint_folder(bundled, img_dir, run, progress=False, **b)
        assert state(run) == ref_b, (k, calls[k])
        folder.inpaint_folder(bundled, img_dir, back, progress=False, **a)
        assert state(back) == ref_a, (k, calls[k])
        shutil.rmtree(run)
        shutil.rmtree(back)


def test_a_real_kill_between_an_output_and_its_manifest_line(bundled, tmp_path):
    """A process SIGKILLed after it renamed an output of settings B into place, before its manifest line: a later
    run with settings A (the same file names) redoes that file instead of taking it for its own."""
    img_dir, _ = make_inputs(tmp_path, 2)
    a = dict(preset="thick", **FAST)
    out = tmp_path / "out"
    folder.inpaint_folder(bundled, img_dir, out, progress=False, **a)
    ref_a = state(out)
    script = (
        "import os, signal, sys\n"
        "from repaint import folder, load, manifest\n"
        "manifest.append = lambda path, record: os.kill(os.getpid(), signal.SIGKILL)\n"
        "folder.inpaint_folder(load('bundled', device='cpu'), sys.argv[1], sys.argv[2], preset='thick', steps=3,"
        " jump_length=1, jump_n_sample=1, progress=False)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(img_dir), str(out)],
        cwd=REPO,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / "inpainted/00000.png").read_bytes() != ref_a[0]["inpainted/00000.png"]  # B's output, renamed in
    assert_lines_tell_the_truth(out)
    again = folder.inpaint_folder(bundled, img_dir, out, progress=False, **a)
    assert "inpainted/00000.png" in again.written
    assert state(out) == ref_a


def test_bad_files_are_reported_and_skipped(bundled, tmp_path, capsys):
    img_dir, mask_dir = make_inputs(tmp_path, 2)
    (img_dir / "broken.png").write_bytes(b"not a png")
    (mask_dir / "broken.png").write_bytes((mask_dir / "00000.png").read_bytes())
    Image.new("RGB", (32, 32)).save(img_dir / "nomask.jpg")
    Image.new("L", (8, 8), 255).save(mask_dir / "small.png")
    Image.new("RGB", (32, 32)).save(img_dir / "small.png")
    (img_dir / "notes.txt").write_text("ignored")
    code = main(
        [
            "--image-dir",
            str(img_dir),
            "--mask-dir",
            str(mask_dir),
            "--keep-mask",
            "--out-dir",
            str(tmp_path / "out"),
            *CLI_KW,
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "skipped " + str(img_dir / "broken.png") + ": not a readable image file" in err
    assert "skipped " + str(img_dir / "nomask.jpg") + ": no mask named nomask.*" in err
    assert "skipped " + str(img_dir / "small.png") + ": the mask is 8x8 but the image is 32x32" in err
    assert "wrote 2 outputs" in err and "3 input(s) skipped" in err
    assert sorted(pngs(tmp_path / "out")) == sorted(f"{d}/{i:05d}.png" for d in folder.LAYOUT for i in range(2))


def test_pair_by_order_and_argument_errors(tmp_path, capsys):
    img_dir, mask_dir = make_inputs(tmp_path, 2)
    for i, m in enumerate(sorted(mask_dir.iterdir())):
        m.rename(mask_dir / f"mask{i}.png")
    jobs, problems = folder.pair_jobs(img_dir, mask_dir, pair="order")
    assert [(j.image.name, j.mask.name) for j in jobs] == [("00000.png", "mask0.png"), ("00001.png", "mask1.png")]
    assert not problems
    assert len(folder.pair_jobs(img_dir, mask_dir)[1]) == 2  # by name: no mask for either
    for bad in (["--image", "x.png"], ["--out", "x.png"], ["--compare"], ["--size", "full"], ["--size", "model"]):
        with pytest.raises(SystemExit):
            main(["--image-dir", str(img_dir), "--preset", "thick", "--out-dir", str(tmp_path / "o"), *bad])
    with pytest.raises(SystemExit):
        main(["--image", "x.png", "--mask-dir", str(mask_dir), "--out", "y.png"])
    assert main(["--image-dir", str(tmp_path / "missing"), "--preset", "thick", "--out-dir", "o"]) == 2
    assert "not a folder" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Process ids started by ``pid``, directly or not (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _launch(n: int, img_dir: Path, out: Path, *extra: str, **popen) -> subprocess.Popen:
    """``accelerate launch`` of the CLI with n CPU processes (torchrun's launcher; --cpu would start only one)."""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "repaint",
        "--image-dir",
        str(img_dir),
        "--preset",
        "thick",
        "--out-dir",
        str(out),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


@pytest.mark.heavy
def test_two_processes_give_the_images_of_one(bundled, tmp_path):
    pytest.importorskip("accelerate")
    img_dir, _ = make_inputs(tmp_path, 5)
    folder.inpaint_folder(bundled, img_dir, tmp_path / "one", preset="thick", batch_size=5, progress=False, **KW)
    proc = _launch(2, img_dir, tmp_path / "two", "--batch-size", "2", *CLI_KW)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log
    assert "wrote 5 outputs" in log and "with 2 process(es)" in log
    two, one = pngs(tmp_path / "two"), pngs(tmp_path / "one")
    assert sorted(two) == sorted(one) and [k for k in one if two[k] != one[k]] == [], log
    lines = [json.loads(x) for x in (tmp_path / "two" / folder.MANIFEST).read_text().splitlines()]
    assert sorted(x["process"] for x in lines) == [0, 0, 0, 1, 1], lines  # split 3 + 2 between the processes


@pytest.mark.slow
def test_killed_two_process_run_resumes_in_one(bundled, tmp_path):
    pytest.importorskip("accelerate")
    img_dir, _ = make_inputs(tmp_path, 8)
    kw = dict(steps=20, jump_length=5, jump_n_sample=3)
    folder.inpaint_folder(bundled, img_dir, tmp_path / "ref", preset="thick", batch_size=4, progress=False, **kw)
    out = tmp_path / "out"
    proc = _launch(2, img_dir, out, "--steps", "20", "--jump-length", "5", "--jump-n-sample", "3")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(p.stat().st_size for p in out.glob("manifest.part-*.jsonl")):
        time.sleep(0.05)
    for pid in [proc.pid, *_descendants(proc.pid)]:  # the launcher and its workers (in sessions of their own)
        os.kill(pid, signal.SIGKILL)
    proc.communicate()
    done = len(list((out / "inpainted").glob("*.png")))
    assert 0 < done < 8, "the run must be killed part-way"
    s = folder.inpaint_folder(bundled, img_dir, out, preset="thick", batch_size=3, progress=False, **kw)
    assert len(s.written) + s.done_before == 8 and s.done_before >= 1
    assert pngs(out) == pngs(tmp_path / "ref")
    assert len((out / folder.MANIFEST).read_text().splitlines()) == 8
    assert not list(out.glob("manifest.part-*")) and not list(out.glob("*/.*.tmp"))


def test_several_processes_without_accelerate_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate raises ImportError
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"pip install 'repaint\[folder\]'"):
        folder.process_state()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert isinstance(folder.process_state(), folder.SingleProcess)
