"""Folder mode (repaint.folder): layout, per-image seeds, resuming, bad files, and several processes (accelerate)."""

from __future__ import annotations

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
from _tiny import assert_same_run
from PIL import Image

from repaint import faces, folder, masks
from repaint.__main__ import main
from repaint.models import load

pytestmark = pytest.mark.usefixtures("one_thread")  # the bundled model, in this process: see conftest.py

REPO = Path(__file__).resolve().parents[1]
KW = dict(steps=4, jump_length=2, jump_n_sample=2)  # 6 model calls per image
CLI_KW = ["--steps", "4", "--jump-length", "2", "--jump-n-sample", "2"]


@pytest.fixture(scope="module")
def pipe():
    return load("bundled", device="cpu")


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


def test_layout_matches_the_inputs_and_the_single_image_path(pipe, tmp_path):
    img_dir, mask_dir = make_inputs(tmp_path, 3)
    out = tmp_path / "out"
    s = folder.inpaint_folder(pipe, img_dir, out, mask_dir=mask_dir, keep_mask=True, batch_size=2, seed=5,
                              progress=False, **KW)
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
        # The same output as the one-image API with the image's seed: batching changes nothing.
        (alone,) = pipe.inpaint(img_dir / name, mask_dir / name, keep_mask=True, seed=folder.image_seed(5, name[:-4]),
                                **KW)
        assert np.array_equal(got, np.asarray(alone))
    lines = [json.loads(x) for x in (out / folder.MANIFEST).read_text().splitlines()]
    assert [x["output"] for x in lines] == [f"inpainted/{i:05d}.png" for i in range(3)]
    assert lines[1]["seed"] == folder.image_seed(5, "00001") and lines[1]["settings"]["steps"] == 4
    assert lines[1]["model_calls"] == pipe.model_calls(**KW) and lines[1]["mask"] == str(mask_dir / "00001.png")


def test_outputs_do_not_depend_on_order_batch_or_subset(pipe, tmp_path):
    img_dir, _ = make_inputs(tmp_path, 4)
    folder.inpaint_folder(pipe, img_dir, tmp_path / "all", preset="wide", batch_size=3, num_samples=2,
                          progress=False, **KW)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(img_dir / "00002.png", one / "00002.png")
    folder.inpaint_folder(pipe, one, tmp_path / "alone", preset="wide", batch_size=1, num_samples=2, progress=False,
                          **KW)
    both = pngs(tmp_path / "all")
    assert len(both) == 4 * 2 * 3 + 4  # a random preset: per sample an output, a masked input and a keep mask
    for key, data in pngs(tmp_path / "alone").items():
        assert both[key] == data, key
    a, b = arr(tmp_path / "all/inpainted/00002-0.png"), arr(tmp_path / "all/inpainted/00002-1.png")
    assert not np.array_equal(a, b)  # two samples, two seeds


@pytest.mark.parametrize("preset", ["thick", "wide", "center_box"])
def test_sample_i_is_the_api_run_with_its_seed_and_its_own_mask(pipe, tmp_path, preset):
    """Folder mode's "sample i equals a run alone with its seed": output i of an image is the one-image API's result
    with seed image_seed(seed, stem, i), random presets included (each sample its own mask, drawn from that seed),
    and the masked input and keep mask written beside it are those of its own mask."""
    img_dir, _ = make_inputs(tmp_path, 2)
    out = tmp_path / "out"
    folder.inpaint_folder(pipe, img_dir, out, preset=preset, num_samples=3, batch_size=4, seed=9, progress=False, **KW)
    own = preset in masks.RANDOM
    for name in ("00000", "00001"):
        face = arr(out / "gt" / f"{name}.png")
        for i in range(3):
            s = folder.image_seed(9, name, i)
            (alone,) = pipe.inpaint(img_dir / f"{name}.png", preset, seed=s, **KW)
            assert_same_run(arr(out / "inpainted" / f"{name}-{i}.png"), alone)
            keep = ~masks.preset(preset, 32, 32, seed=s)
            companion = f"{name}-{i}.png" if own else f"{name}.png"
            white = np.repeat(keep[..., None] * np.uint8(255), 3, 2)
            assert np.array_equal(arr(out / "gt_keep_mask" / companion), white)
            assert np.array_equal(arr(out / "gt_masked" / companion), np.where(keep[..., None], face, 0))
    assert len(pngs(out)) == 2 * 3 + 2 + (2 * 3 * 2 if own else 2 * 2)


def test_resume_redoes_only_what_is_missing_or_changed(pipe, tmp_path):
    img_dir, mask_dir = make_inputs(tmp_path, 3)
    out = tmp_path / "out"
    run = lambda **kw: folder.inpaint_folder(pipe, img_dir, out, mask_dir=mask_dir, keep_mask=True,  # noqa: E731
                                             progress=False, **{**KW, **kw})
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


def test_bad_files_are_reported_and_skipped(pipe, tmp_path, capsys):
    img_dir, mask_dir = make_inputs(tmp_path, 2)
    (img_dir / "broken.png").write_bytes(b"not a png")
    (mask_dir / "broken.png").write_bytes((mask_dir / "00000.png").read_bytes())
    Image.new("RGB", (32, 32)).save(img_dir / "nomask.jpg")
    Image.new("L", (8, 8), 255).save(mask_dir / "small.png")
    Image.new("RGB", (32, 32)).save(img_dir / "small.png")
    (img_dir / "notes.txt").write_text("ignored")
    code = main(["--image-dir", str(img_dir), "--mask-dir", str(mask_dir), "--keep-mask", "--out-dir",
                 str(tmp_path / "out"), *CLI_KW])
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
    for bad in (["--image", "x.png"], ["--out", "x.png"], ["--compare"]):
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
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "repaint",
           "--image-dir", str(img_dir), "--preset", "thick", "--out-dir", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def test_two_processes_give_the_images_of_one(pipe, tmp_path):
    pytest.importorskip("accelerate")
    img_dir, _ = make_inputs(tmp_path, 5)
    folder.inpaint_folder(pipe, img_dir, tmp_path / "one", preset="thick", batch_size=5, progress=False, **KW)
    proc = _launch(2, img_dir, tmp_path / "two", "--batch-size", "2", *CLI_KW)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log
    assert "wrote 5 outputs" in log and "with 2 process(es)" in log
    two, one = pngs(tmp_path / "two"), pngs(tmp_path / "one")
    assert sorted(two) == sorted(one) and [k for k in one if two[k] != one[k]] == [], log
    lines = [json.loads(x) for x in (tmp_path / "two" / folder.MANIFEST).read_text().splitlines()]
    assert sorted(x["process"] for x in lines) == [0, 0, 0, 1, 1], lines  # split 3 + 2 between the processes


@pytest.mark.slow
def test_killed_two_process_run_resumes_in_one(pipe, tmp_path):
    pytest.importorskip("accelerate")
    img_dir, _ = make_inputs(tmp_path, 8)
    kw = dict(steps=20, jump_length=5, jump_n_sample=3)
    folder.inpaint_folder(pipe, img_dir, tmp_path / "ref", preset="thick", batch_size=4, progress=False, **kw)
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
    s = folder.inpaint_folder(pipe, img_dir, out, preset="thick", batch_size=3, progress=False, **kw)
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
