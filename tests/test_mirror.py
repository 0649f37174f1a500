"""The paper's models from a Hub mirror (issue 18): a registry ADM entry pointed at a Hub repository made by
``python -m repaint.convert ... --push-to-hub`` loads like any Hub model (offline here, from a Hub-layout cache the
test builds, as ``preload_from_hub`` leaves it on a Space); the request-time download (Google Drive for the paper's
files; a loopback server here) is only the fallback without a mirror, and a download holds no other model's lock.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _adm import save_checkpoint
from huggingface_hub import constants as hf_constants

import repaint
from repaint import convert, models, space

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def drive(tmp_path, monkeypatch):
    """A registry entry 'tinyadm' whose checkpoint a loopback server sends (the Google Drive stand-in); the server
    records each request and holds a download while ``gate`` is cleared."""
    www = tmp_path / "www"
    www.mkdir()
    ckpt, model, o = save_checkpoint(www / "tiny_1000.pt")
    asked, gate = [], threading.Event()
    gate.set()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            gate.wait(30)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setitem(convert.PRESETS, "tiny", {k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    info = repaint.ModelInfo(
        "tinyadm",
        None,
        16,
        "test",
        "MIT",
        url=f"http://127.0.0.1:{httpd.server_address[1]}/tiny_1000.pt",
        filename="tiny_1000.pt",
        preset="tiny",
        source="the test server",
        download_mb=1,
        gpu_only=False,
    )
    monkeypatch.setitem(repaint.MODELS, "tinyadm", info)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("REPAINT_HUB_MIRROR_TINYADM", raising=False)
    yield dict(ckpt=ckpt, model=model, asked=asked, gate=gate, info=info)
    gate.set()
    httpd.shutdown()
    httpd.server_close()


def _readme_preload() -> list[str]:
    """The preload_from_hub lines of docs/deploy.md (its front-matter example)."""
    section = (ROOT / "docs" / "deploy.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    (lines,) = [b["preload_from_hub"] for b in blocks if isinstance(b, dict) and "preload_from_hub" in b]
    return lines


def _mirror_cache(cache: Path, repo_id: str, folder: Path, files: list[str]) -> Path:
    """A Hub cache as preload_from_hub leaves it, holding only ``files`` of the pushed folder."""
    snap = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for f in files:
        shutil.copy(folder / f, snap / f)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text(COMMIT)
    return cache


def test_a_mirror_loads_from_the_preloaded_cache_and_nothing_is_downloaded(tmp_path, drive, monkeypatch):
    folder = convert.convert_adm(drive["ckpt"], tmp_path / "pushed", preset="tiny")  # what --push-to-hub uploads
    preload = [line for line in _readme_preload() if "places2" in line]
    assert preload, "docs/deploy.md's front-matter example preloads the places2 mirror"
    repo, files = preload[0].split()
    cache = _mirror_cache(tmp_path / "hf", "someone/tiny-mirror", folder, files.split(","))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # the Space's build already fetched it
    monkeypatch.setenv("REPAINT_HUB_MIRROR_TINYADM", "someone/tiny-mirror")
    pipe = repaint.load("tinyadm", device="cpu", cache_dir=cache)
    assert drive["asked"] == []  # the request-time download was not tried
    assert pipe.learned_variance and pipe.resolution == 16
    x, t = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([999])
    with torch.no_grad():
        assert (pipe.unet(x, t).sample - drive["model"](x, t)).abs().max() <= 1e-5
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    (out,) = pipe.inpaint(img, "left_half", steps=4, jump_length=2, jump_n_sample=2)
    rgb, m = pipe.prepare(img, "left_half")
    assert np.array_equal(np.asarray(out)[~m], rgb[~m])


def test_a_missing_mirror_is_named_and_nothing_is_downloaded(tmp_path, drive, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("REPAINT_HUB_MIRROR_TINYADM", "someone/not-preloaded")
    with pytest.raises(repaint.ModelLoadError, match="REPAINT_HUB_MIRROR_TINYADM=someone/not-preloaded"):
        repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf")
    assert drive["asked"] == []
    # a folder this machine converted before serves when the mirror cannot be had
    convert.convert_adm(drive["ckpt"], tmp_path / "hf" / "repaint-adm" / "tinyadm" / "diffusers", preset="tiny")
    assert repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf").learned_variance
    assert drive["asked"] == []


def test_without_a_mirror_the_download_is_the_fallback(tmp_path, drive, monkeypatch):
    monkeypatch.setenv("REPAINT_HUB_MIRROR_TINYADM", "")  # set but empty: no mirror
    assert models.hub_mirror(drive["info"]) is None
    assert repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf").learned_variance
    assert drive["asked"] == ["/tiny_1000.pt"]
    monkeypatch.setenv("REPAINT_HUB_MIRROR_TINYADM", " someone/m ")
    assert models.hub_mirror(drive["info"]) == "someone/m"


def test_registry_entries_take_a_mirror_field():
    info = models.ModelInfo("x", None, 256, "d", url="u", filename="f.pt", preset="places256", hub_mirror="someone/x")
    assert models.hub_mirror(info) == "someone/x"


def test_a_download_holds_no_other_models_lock(tmp_path, drive, monkeypatch):
    """While one model downloads (the server holds the file), another model loads at once."""
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    svc = space.Service()
    drive["gate"].clear()
    slow = threading.Thread(target=svc.cache.get_model, args=("tinyadm",), daemon=True)
    slow.start()
    deadline = time.monotonic() + 30
    while not drive["asked"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert drive["asked"] == ["/tiny_1000.pt"]  # the download is under way, and held
    loaded = []
    other = threading.Thread(target=lambda: loaded.append(svc.cache.get_model("bundled")), daemon=True)
    other.start()
    other.join(20)
    assert loaded and loaded[0].name == "bundled", "bundled waited for the other model's download"
    assert slow.is_alive() and "tinyadm" not in svc.cache.models
    drive["gate"].set()
    slow.join(30)
    assert svc.cache.models["tinyadm"].learned_variance
    assert svc.cache.get_model("tinyadm") is svc.cache.models["tinyadm"]  # loaded once
    assert drive["asked"] == ["/tiny_1000.pt"]


def test_the_download_happens_in_the_checks_before_the_gpu_run(tmp_path, drive, monkeypatch):
    """The serving chain checks a request (loading its model, downloading it if need be) before it asks for a GPU;
    the run itself (the @spaces.GPU function's body) finds the model loaded and downloads nothing."""
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    svc = space.Service()
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    req = space.Request(
        model="tinyadm", settings=repaint.Settings(steps=4, jump_length=2, jump_n_sample=1), image=img, mask="left_half"
    )
    svc.check_request(req)
    assert drive["asked"] == ["/tiny_1000.pt"]  # the loopback host's log of the files asked for
    events = list(svc.runner.run(req))
    assert isinstance(events[-1], space.Done) and drive["asked"] == ["/tiny_1000.pt"]
