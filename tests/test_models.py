"""Loading models (both folder layouts, the Hub cache offline, weights safety) and the Inpainter's input handling."""

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from _tiny import assert_same_run, save_pipeline_layout, save_root_layout, tiny_pipe
from PIL import Image

import repaint
from repaint import ModelLoadError

ROOT = Path(__file__).resolve().parents[1]


def _hub_cache(cache: Path, repo_id: str, make) -> Path:
    """A Hugging Face Hub cache as snapshot_download leaves it: blobs are plain files in the snapshot."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    make(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.unet.state_dict().values(), b.unet.state_dict().values()))


@pytest.mark.parametrize("safe", [True, False])
def test_load_root_layout(tmp_path, safe):
    pipe = repaint.load(save_root_layout(tmp_path, safe=safe), device="cpu")
    assert pipe.resolution == 16 and pipe.train_steps == 1000
    assert _same_weights(pipe, tiny_pipe())


def test_load_pipeline_layout(tmp_path):
    pipe = repaint.load(save_pipeline_layout(tmp_path), device="cpu")
    assert pipe.resolution == 16 and _same_weights(pipe, tiny_pipe())


def test_load_from_hub_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = _hub_cache(tmp_path, "someone/tiny-ddpm", save_root_layout)
    pipe = repaint.load("someone/tiny-ddpm", device="cpu", cache_dir=cache)
    assert pipe.resolution == 16 and _same_weights(pipe, tiny_pipe())


def test_load_hub_never_reads_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    save_root_layout(tmp_path / "someone" / "tiny-ddpm")  # a local folder named like the repo id
    with pytest.raises(ModelLoadError, match="not in the local cache"):
        repaint.load_hub("someone/tiny-ddpm", device="cpu", cache_dir=tmp_path / "empty")
    assert repaint.load("someone/tiny-ddpm", device="cpu").resolution == 16  # load() does read it


def test_preset_names_win_over_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("L", (16, 16), 255).save(tmp_path / "left_half", format="PNG")  # a file named like a preset
    _, m = tiny_pipe().prepare(np.zeros((16, 16, 3), dtype=np.uint8), "left_half")
    assert m[:, :8].all() and not m[:, 8:].any()


def test_error_messages_show_no_server_paths(tmp_path):
    save_root_layout(tmp_path)
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError) as e:
        repaint.load(tmp_path, device="cpu")
    assert str(e.value).count(str(tmp_path)) == 1  # the name the caller gave, nothing more


def test_offline_miss_names_the_model(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match=r"'celebahq' \(google/ddpm-ema-celebahq-256\) is not in the local cache"):
        repaint.load("celebahq", device="cpu", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="someone/missing"):
        repaint.load("someone/missing", device="cpu", cache_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/repaint-pwned",))


def test_bin_weights_load_weights_only(tmp_path):
    """A pickle that would run code is refused: .bin files go through torch.load(weights_only=True)."""
    save_root_layout(tmp_path, safe=False)
    with open(tmp_path / "diffusion_pytorch_model.bin", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(ModelLoadError, match="cannot read"):
        repaint.load(tmp_path, device="cpu")
    assert not Path("/tmp/repaint-pwned").exists()


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: (p / "scheduler_config.json").unlink(), "scheduler_config.json is missing"),
        (lambda p: (p / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage"), "cannot read"),
        (lambda p: (p / "diffusion_pytorch_model.safetensors").unlink(), "no diffusion_pytorch_model"),
    ],
)
def test_broken_folders_give_clear_errors(tmp_path, damage, message):
    save_root_layout(tmp_path)
    damage(tmp_path)
    with pytest.raises(ModelLoadError, match=message):
        repaint.load(tmp_path, device="cpu")


def test_unknown_name():
    with pytest.raises(ModelLoadError, match="unknown model 'nonsense'"):
        repaint.load("nonsense")


def test_registry_is_frozen_data():
    assert {"celebahq", "church", "bedroom", "cat", "cifar10", "bundled"} <= set(repaint.MODELS)
    assert repaint.MODELS["celebahq"].repo_id == "google/ddpm-ema-celebahq-256"
    with pytest.raises(AttributeError):
        repaint.MODELS["cat"].resolution = 1


# --- input handling ------------------------------------------------------------------------------------------------


def test_prepare_centre_crops_and_resizes_mask_nearest(pipe):
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    img[:, 10:30] = 200  # the centre square is uniform
    mask = np.zeros((20, 40), dtype=bool)
    mask[:, 10:20] = True  # left half of the centre square
    rgb, m = pipe.prepare(img, mask)
    assert rgb.shape == (16, 16, 3) and (rgb == 200).all()
    assert m.dtype == bool and m[:, :8].all() and not m[:, 8:].any()


def test_prepare_presets_at_model_resolution(pipe):
    _, m = pipe.prepare(np.zeros((50, 50, 3), dtype=np.uint8), "super_resolution_2x")
    assert m.shape == (16, 16) and m.mean() == 0.75 and not m[0::2, 0::2].any()


def test_mask_size_mismatch(pipe):
    with pytest.raises(ValueError, match="the mask is 5x5 but the image is 16x16"):
        pipe.prepare(np.zeros((16, 16, 3), dtype=np.uint8), np.zeros((5, 5), dtype=bool))


def test_keep_mask_flag(pipe):
    keep = np.zeros((16, 16), dtype=bool)
    keep[:, :4] = True  # RePaint's own convention: white = keep
    _, m = pipe.prepare(
        np.zeros((16, 16, 3), dtype=np.uint8), Image.fromarray(keep.astype(np.uint8) * 255), keep_mask=True
    )
    assert np.array_equal(m, ~keep)


def test_keep_mask_does_not_flip_presets(pipe):
    """A preset always names the region to fill; keep_mask is about mask files (white = keep), invert flips both."""
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    left = np.arange(16)[None, :].repeat(16, 0) < 8  # left_half: columns 0-7 filled
    assert np.array_equal(pipe.prepare(img, "left_half", keep_mask=True)[1], left)
    assert np.array_equal(pipe.prepare(img, "left_half", keep_mask=True, invert=True)[1], ~left)
    assert np.array_equal(pipe.prepare(img, "left_half", invert=True)[1], ~left)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(steps=0), "steps must be between 1 and 1000"),
        (dict(steps=1001), "steps must be between 1 and 1000"),
        (dict(steps=10.5), "steps must be an integer"),
        (dict(jump_length=20, steps=10), "jump_length must be at most"),
        (dict(jump_n_sample=0), "jump_n_sample must be between"),
        (dict(jump_n_sample=True), "must be an integer"),
        (dict(seed=-1), "seed must be between"),
        (dict(num_samples=17), "num_samples must be between"),
    ],
)
def test_settings_are_bounded(pipe, kw, message):
    with pytest.raises(ValueError, match=message):
        pipe.inpaint(np.zeros((16, 16, 3), dtype=np.uint8), "left_half", **{"steps": 10, "jump_length": 2} | kw)


def test_empty_mask_returns_input_without_model_calls(pipe):
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    calls = []
    empty = np.zeros((16, 16), dtype=bool)
    out = pipe.inpaint(img, empty, steps=10, num_samples=2, callback=lambda *a: calls.append(1))
    assert len(out) == 2 and all(np.array_equal(np.asarray(o), img) for o in out) and not calls


def test_full_mask_is_unconditional_generation(pipe):
    (out,) = pipe.inpaint(
        np.zeros((16, 16, 3), dtype=np.uint8), np.ones((16, 16), dtype=bool), steps=5, jump_length=1, jump_n_sample=1
    )
    assert np.asarray(out).std() > 0


def test_no_image_or_no_mask(pipe):
    with pytest.raises(ValueError, match="no image"):
        pipe.inpaint(None, "left_half", steps=5, jump_length=1)
    with pytest.raises(ValueError, match="no mask"):
        pipe.inpaint(np.zeros((16, 16, 3), dtype=np.uint8), None, steps=5, jump_length=1)


# --- command line --------------------------------------------------------------------------------------------------


def test_cli_end_to_end(tmp_path, capsys):
    from repaint.__main__ import main

    model = save_root_layout(tmp_path / "model")
    rgb = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    mask = np.zeros((24, 24), dtype=np.uint8)
    mask[6:18, 6:18] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    rc = main(
        [
            "--image",
            str(tmp_path / "in.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--out",
            str(tmp_path / "out.png"),
            "--model",
            str(model),
            "--steps",
            "6",
            "--jump-length",
            "2",
            "--jump-n-sample",
            "2",
            "--num-samples",
            "2",
            "--compare",
        ]
    )
    assert rc == 0
    for name in ("out-0.png", "out-1.png", "out-n1-0.png", "out-n1-1.png"):  # a mask file: the input's own size
        out = Image.open(tmp_path / name)
        assert out.info.get("srgb") == 0  # tagged sRGB (rendering intent 0), as the pixels are
        out = np.asarray(out)
        assert out.shape == (24, 24, 3) and (out[mask == 0] == rgb[mask == 0]).all()
    assert (
        main(
            [
                "--image",
                str(tmp_path / "in.png"),
                "--mask",
                str(tmp_path / "mask.png"),
                "--out",
                str(tmp_path / "small.png"),
                "--model",
                str(model),
                "--steps",
                "2",
                "--jump-length",
                "1",
                "--size",
                "model",
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "small.png").size == (16, 16)  # the model's resolution
    err = capsys.readouterr().err
    assert "wrote" in err and "call" in err  # tqdm progress on stderr
    assert (
        main(
            [
                "--image",
                str(tmp_path / "in.png"),
                "--preset",
                "left_half",
                "--out",
                str(tmp_path / "x.png"),
                "--model",
                str(model),
                "--steps",
                "0",
            ]
        )
        == 2
    )
    assert "steps must be" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("preset", ["thick", "wide", "every_second_line"])
def test_cli_sample_i_equals_a_run_with_seed_plus_i(tmp_path, preset):
    """The --seed help's promise, random presets included: OUT-i.png (and OUT-n1-i.png) of one run are the files of
    separate runs with --seed SEED + i."""
    from repaint.__main__ import main

    model = save_root_layout(tmp_path / "model")
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")

    def run(out, *a):
        return main(
            [
                "--image",
                str(tmp_path / "in.png"),
                "--preset",
                preset,
                "--model",
                str(model),
                "--steps",
                "4",
                "--jump-length",
                "2",
                "--jump-n-sample",
                "2",
                "--compare",
                "--out",
                str(tmp_path / out),
                *a,
            ]
        )

    assert run("all.png", "--seed", "7", "--num-samples", "3") == 0
    for i in range(3):
        assert run(f"one{i}.png", "--seed", str(7 + i)) == 0
        for suffix in ("", "-n1"):
            assert_same_run(Image.open(tmp_path / f"all{suffix}-{i}.png"), Image.open(tmp_path / f"one{i}{suffix}.png"))


def test_cli_help_lists_registries():
    from repaint.__main__ import build_parser

    text = build_parser().format_help()
    assert all(name in text for name in repaint.MODELS) and all(name in text for name in repaint.masks.PRESETS)


def test_cli_offline_hub_id_subprocess(tmp_path):
    """The real command, in a fresh process with HF_HUB_OFFLINE=1 and a Hub-layout cache: loads from the cache."""
    cache = _hub_cache(tmp_path / "hub", "someone/tiny-ddpm", save_root_layout)
    Image.new("RGB", (16, 16), (10, 20, 30)).save(tmp_path / "in.png")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "repaint",
        "--image",
        str(tmp_path / "in.png"),
        "--preset",
        "every_second_line",
        "--out",
        str(tmp_path / "out.png"),
        "--model",
        "someone/tiny-ddpm",
        "--steps",
        "4",
        "--jump-length",
        "2",
        "--jump-n-sample",
        "2",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert (out[0::2] == (10, 20, 30)).all()  # kept rows exact
    miss = subprocess.run(cmd[:-8] + ["--model", "cat"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert miss.returncode == 2 and "'cat' (google/ddpm-ema-cat-256) is not in the local cache" in miss.stderr


def test_a_weights_file_that_does_not_fill_the_config_is_refused(tmp_path):
    """diffusers fills the parameters a weights file lacks with random ones; the load refuses instead, for a model
    folder and for a classifier folder alike (a random network must never run silently)."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial"
    shutil.copytree(repaint.models.BUNDLED_DIR, folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    dropped = sorted(state)[: len(state) // 2]
    save_file({k: v for k, v in state.items() if k not in dropped}, weights)
    with pytest.raises(repaint.ModelLoadError, match=rf"{len(dropped)} missing of {len(state)} tensors"):
        repaint.load(str(folder), device="cpu")
    save_file(state, weights)  # the whole file loads
    assert repaint.load(str(folder), device="cpu").resolution == repaint.load("bundled", device="cpu").resolution
