"""Fast checks of the procedural faces and the training command (tiny configs, CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image
from safetensors.torch import load_file

from repaint.faces import EVAL_SEED, LABELS, make_faces, render_face, train_rng
from repaint.train import load_folder, main

TINY = ["--size", "16", "--batch-size", "4", "--channels", "16,16", "--threads", "1", "--no-progress"]
SHIPPED = {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"}


def test_faces_symmetric_deterministic_and_labelled() -> None:
    x, lab = make_faces(16, seed=3, return_labels=True)
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.uint8 and lab.shape == (16, 32, 32)
    assert np.array_equal(x, x[:, :, ::-1]) and np.array_equal(lab, lab[:, :, ::-1])
    assert np.array_equal(x, make_faces(16, seed=3))
    assert not np.array_equal(x, make_faces(16, seed=4))
    for img, lb in zip(x, lab):
        assert set(np.unique(lb)) == set(range(len(LABELS)))
        for k in range(len(LABELS)):  # one flat colour per region
            assert len(np.unique(img[lb == k], axis=0)) == 1
    assert render_face(np.random.default_rng(0), size=64).shape == (64, 64, 3)


def test_train_stream_is_not_eval_stream() -> None:
    ev = make_faces(4, seed=EVAL_SEED)
    rng = train_rng(EVAL_SEED)
    tr = np.stack([render_face(rng) for _ in range(4)])
    assert not np.array_equal(ev, tr)


def _load(out: Path) -> UNet2DModel:
    unet = UNet2DModel.from_pretrained(out)
    DDPMScheduler.from_pretrained(out)
    return unet


def test_train_faces_and_folder(tmp_path: Path) -> None:
    main(["--out", str(tmp_path / "faces"), "--steps", "3", *TINY])
    assert {p.name for p in (tmp_path / "faces").iterdir()} >= SHIPPED
    assert len((tmp_path / "faces" / "loss.csv").read_text().splitlines()) == 4
    assert _load(tmp_path / "faces").config.sample_size == 16

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(40, 30), (20, 50), (24, 24)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(imgs / f"{i}.{'png' if i else 'jpg'}")
    (imgs / "notes.txt").write_text("not an image")
    out = tmp_path / "folder"
    cmd = [
        sys.executable,
        "-m",
        "repaint.train",
        "--data",
        str(imgs),
        "--out",
        str(out),
        "--work",
        str(tmp_path / "w"),
        "--steps",
        "3",
        "--no-keep-state",
        *TINY,
    ]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])
    assert {p.name for p in out.iterdir()} == SHIPPED  # shipped folder holds only the 3 files
    assert not (tmp_path / "w" / "train_state.pt").exists()
    _load(out)


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    main(["--out", str(tmp_path / "a"), "--steps", "4", *TINY])
    main(["--out", str(tmp_path / "b"), "--steps", "2", *TINY])
    main(["--out", str(tmp_path / "b"), "--steps", "4", "--resume", *TINY])
    wa = load_file(tmp_path / "a" / "diffusion_pytorch_model.safetensors")
    wb = load_file(tmp_path / "b" / "diffusion_pytorch_model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    la = (tmp_path / "a" / "loss.csv").read_text()
    assert la == (tmp_path / "b" / "loss.csv").read_text()
    assert torch.load(tmp_path / "b" / "train_state.pt")["step"] == 4


def test_load_folder_prepares_images_as_inference_does(tmp_path):
    """Centre crop, EXIF rotation and transparency are handled as by ``repaint.images.fit_image``."""
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, :5] = (0, 0, 255)  # the side bands, cut off by the centred 20x20 crop
    img[:, 25:] = (0, 0, 255)
    img[:, 5:25] = (255, 0, 0)
    Image.fromarray(img).save(tmp_path / "a_wide.png")
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent: white once over white
    Image.fromarray(rgba).save(tmp_path / "b_clear.png")
    halves = np.zeros((8, 16, 3), np.uint8)  # stored wide, left red / right green, EXIF: rotate 90 degrees
    halves[:, :8] = (255, 0, 0)
    halves[:, 8:] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(halves).save(tmp_path / "c_rotated.png", exif=exif)
    (tmp_path / "notes.txt").write_text("not an image")

    data = load_folder(tmp_path, 8)
    assert data.shape == (3, 8, 8, 3)
    assert (data[0] == (255, 0, 0)).all() and (data[1] == 255).all()
    upright = data[2]  # tall once upright: its centre square is split into top and bottom halves
    assert np.array_equal(upright, upright[:, ::-1]) and not np.array_equal(upright[0], upright[-1])
    assert (upright[:3] == (255, 0, 0)).all() and (upright[-3:] == (0, 255, 0)).all()


def test_init_fine_tunes_an_existing_model(tmp_path: Path) -> None:
    """``--init``: training starts from that folder's architecture and weights (0 steps: an exact copy)."""
    tiny = [a for a in TINY if a not in ("--size", "16")]
    main(["--out", str(tmp_path / "base"), "--steps", "2", "--size", "16", *tiny])
    base = load_file(tmp_path / "base" / "diffusion_pytorch_model.safetensors")
    main(["--out", str(tmp_path / "copy"), "--init", str(tmp_path / "base"), "--steps", "0", *tiny])
    copy = load_file(tmp_path / "copy" / "diffusion_pytorch_model.safetensors")
    assert copy.keys() == base.keys() and all(torch.equal(copy[k], base[k]) for k in base)

    main(["--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "base"), "--steps", "2", *tiny])
    tuned = load_file(tmp_path / "tuned" / "diffusion_pytorch_model.safetensors")
    assert _load(tmp_path / "tuned").config.sample_size == 16
    assert tuned.keys() == base.keys() and not all(torch.equal(tuned[k], base[k]) for k in base)
    with pytest.raises(SystemExit, match="--size 32 does not match the model's 16"):
        main(["--out", str(tmp_path / "bad"), "--init", str(tmp_path / "base"), "--size", "32", *tiny])
    cosine = tmp_path / "base" / "scheduler_config.json"
    cosine.write_text(cosine.read_text().replace('"linear"', '"squaredcos_cap_v2"'))
    with pytest.raises(SystemExit, match="another noise schedule"):
        main(["--out", str(tmp_path / "bad"), "--init", str(tmp_path / "base"), *tiny])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
