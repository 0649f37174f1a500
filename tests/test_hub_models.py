"""The registry's Hub models as their repositories really are (tests/_hub_repos.py: the file lists and configs of the
google/ddpm-* repositories at main, with tiny weights): they load from a Hub cache offline and from a loopback Hub,
only the files a load reads are downloaded, and each way a download can fail is named."""

from __future__ import annotations

import hashlib
import sys

import huggingface_hub
import numpy as np
import pytest
import torch
from _hub_repos import CIFAR10, ddpm_repo, write_hub_cache
from _tiny import tiny_scheduler, tiny_unet

import repaint
from repaint import ModelLoadError

HUB_MODELS = [m.name for m in repaint.MODELS.values() if m.repo_id is not None]


def test_the_registry_names_the_five_google_repositories():
    assert sorted(repaint.MODELS[n].repo_id for n in HUB_MODELS) == [
        "google/ddpm-cifar10-32",
        "google/ddpm-ema-bedroom-256",
        "google/ddpm-ema-cat-256",
        "google/ddpm-ema-celebahq-256",
        "google/ddpm-ema-church-256",
    ]


def _same_weights(pipe) -> bool:
    return all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), tiny_unet().state_dict().values()))


@pytest.mark.parametrize("name", HUB_MODELS)
def test_each_registry_model_loads_from_its_real_layout_offline_and_runs(name, tmp_path, monkeypatch):
    repo_id = repaint.MODELS[name].repo_id
    cache = write_hub_cache(tmp_path, repo_id, ddpm_repo(repo_id))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    pipe = repaint.load(name, device="cpu", cache_dir=cache)
    assert _same_weights(pipe) and pipe.train_steps == 1000
    out = pipe.inpaint(np.full((16, 16, 3), 128, np.uint8), "left_half", steps=4, jump_length=2, jump_n_sample=2)
    assert np.asarray(out[0])[:, 8:].tolist() == np.full((16, 8, 3), 128).tolist()  # the known half, exact
    assert "modeling_ddpm" not in sys.modules  # cifar10's remote code is never imported


def test_cifar10s_pre_release_scheduler_config_reads_as_today_s():
    """Its ``timesteps`` is num_train_timesteps and its variance fixed_large: the same tables as a DDPMScheduler
    config with those settings (diffusers' own defaults for the betas: linear, 1e-4 to 0.02)."""
    old = repaint.models.scheduler_config(
        {"_class_name": "GaussianDDPMScheduler", "timesteps": 1000, "variance_type": "fixed_large"}
    )
    new = dict(tiny_scheduler(variance_type="fixed_large").config)
    a, b = repaint.schedule.noise_tables(old, 250), repaint.schedule.noise_tables(new, 250)
    assert a.variance_type == b.variance_type == "fixed_large"
    assert np.array_equal(a.timesteps, b.timesteps) and np.array_equal(a.posterior_variance, b.posterior_variance)


def _gets(hub) -> set[str]:
    return {path for _, path in hub.sent()}


def test_a_download_fetches_only_the_files_a_load_reads(hub, tmp_path, monkeypatch):
    hub.repos["google/ddpm-ema-celebahq-256"] = ddpm_repo("google/ddpm-ema-celebahq-256")
    pipe = repaint.load("celebahq", device="cpu", cache_dir=tmp_path)
    assert _same_weights(pipe)
    commit = hashlib.sha1(b"google/ddpm-ema-celebahq-256").hexdigest()  # the loopback Hub's X-Repo-Commit
    assert hub.sent() == [
        ("main", "config.json"),
        (commit, "scheduler_config.json"),  # the files after the first at its commit
        (commit, "diffusion_pytorch_model.bin"),
    ]

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # then from the cache alone
    assert _same_weights(repaint.load("celebahq", device="cpu", cache_dir=tmp_path))


def test_a_pipeline_repository_gives_its_unet_and_scheduler_folders_only(hub, tmp_path):
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=tiny_unet(), scheduler=tiny_scheduler()).save_pretrained(tmp_path / "pipe")
    files = {
        p.relative_to(tmp_path / "pipe").as_posix(): p.read_bytes()
        for p in (tmp_path / "pipe").rglob("*")
        if p.is_file()
    }
    assert {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    } <= set(files)
    files |= {
        "vae/config.json": b"{}",
        "vae/diffusion_pytorch_model.safetensors": b"x" * 1000,
        "text_encoder/model.safetensors": b"x" * 1000,
        "unet/diffusion_pytorch_model.bin": b"x" * 1000,
    }
    hub.repos["someone/pipe"] = files
    assert _same_weights(repaint.load_hub("someone/pipe", device="cpu", cache_dir=tmp_path / "cache"))
    assert _gets(hub) == {
        "unet/config.json",
        "scheduler/scheduler_config.json",
        "unet/diffusion_pytorch_model.safetensors",
    }


def test_a_repository_of_another_class_is_refused_before_its_weights_are_fetched(hub, tmp_path):
    files = ddpm_repo("google/ddpm-ema-cat-256")
    files["config.json"] = b'{"_class_name": "AutoencoderKL", "sample_size": 16}'
    hub.repos["someone/vae"] = files
    with pytest.raises(ModelLoadError, match="is a AutoencoderKL, not a UNet2DModel"):
        repaint.load_hub("someone/vae", device="cpu", cache_dir=tmp_path)
    assert _gets(hub) == {"config.json", "scheduler_config.json"}


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", r"model 'someone/missing' is not a repository on the Hub \(or it is private: log in"),
        (
            "gated",
            r"model 'someone/gated' is gated on the Hub: accept its conditions on its page \(https://huggingface"
            r"\.co/someone/gated\) and log in",
        ),
        ("empty", r"model 'someone/empty' has no unet/config\.json or config\.json on the Hub"),
        (
            "no weights",
            r"model 'someone/no-weights' has no diffusion_pytorch_model\.safetensors or "
            r"diffusion_pytorch_model\.bin on the Hub",
        ),
    ],
)
def test_each_download_failure_is_named(hub, tmp_path, case, message):
    hub.repos["someone/gated"] = ddpm_repo("google/ddpm-ema-cat-256")
    hub.gated.add("someone/gated")
    hub.repos["someone/empty"] = {"README.md": b"# nothing"}
    hub.repos["someone/no-weights"] = {
        k: v for k, v in ddpm_repo("google/ddpm-ema-cat-256").items() if not k.startswith("diffusion_pytorch_model")
    }
    repo_id = {
        "missing": "someone/missing",
        "gated": "someone/gated",
        "empty": "someone/empty",
        "no weights": "someone/no-weights",
    }[case]
    with pytest.raises(ModelLoadError, match=message):
        repaint.load_hub(repo_id, device="cpu", cache_dir=tmp_path)


def test_no_network_and_no_cache_says_so(hub, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(
        huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", closed + "/{repo_id}/resolve/{revision}/{filename}"
    )
    waits = []  # huggingface_hub retries a refused connection 5 times, waiting 1 s, 2 s, 4 s, 8 s, 8 s between
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", waits.append)
    with pytest.raises(
        ModelLoadError,
        match=r"'cifar10' \(google/ddpm-cifar10-32\) is not in the local cache and "
        r"the Hub could not be reached",
    ):
        repaint.load("cifar10", device="cpu", cache_dir=tmp_path)
    assert len(waits) == 5, "the retries of one file only: the others are looked up in the cache alone"

    write_hub_cache(tmp_path, CIFAR10, ddpm_repo(CIFAR10))  # the Space's build fetched it (preload_from_hub)
    assert _same_weights(repaint.load("cifar10", device="cpu", cache_dir=tmp_path))
    assert len(waits) == 10


def test_offline_mode_without_the_files_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ModelLoadError,
        match=r"'cifar10' \(google/ddpm-cifar10-32\) is not in the local cache and "
        r"HF_HUB_OFFLINE is set",
    ):
        repaint.load("cifar10", device="cpu", cache_dir=tmp_path)


@pytest.mark.parametrize("cached", [True, False])
def test_a_space_whose_default_model_fails_says_so_on_the_page_and_in_the_log(cached, tmp_path, monkeypatch, caplog):
    """A ZeroGPU Space offering celebahq and bundled, starting with celebahq's real layout in its Hub cache (the
    default then) or with nothing cached and no Hub (the page's notice and the server's log name the failure and
    why; the page offers bundled alone, and does not claim the machine has no GPU)."""
    from repaint import space

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    if cached:
        write_hub_cache(tmp_path, "google/ddpm-ema-celebahq-256", ddpm_repo("google/ddpm-ema-celebahq-256"))
    svc = space.Service(on_zerogpu=True, offered=["celebahq", "bundled"], duration_factor=1.5)
    name, notice, _ = svc.start("", "celebahq", "bundled", "REPAINT_MODEL", repaint.Settings())
    if cached:
        assert (name, notice, svc.cache.offered) == ("celebahq", "", ["celebahq", "bundled"])
        return
    assert name == "bundled" and svc.cache.offered == ["bundled"]
    assert "Could not load model 'celebahq'" in notice and "not in the local cache and HF_HUB_OFFLINE is set" in notice
    assert "No GPU here" not in notice
    _, named, _ = svc.start(
        "celebahq", "celebahq", "bundled", "REPAINT_MODEL", repaint.Settings()
    )  # named in the setting
    assert "REPAINT_MODEL='celebahq' could not be loaded; using 'bundled'" in named and "not an offered" not in named
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("celebahq" in r.getMessage() and "not in the local cache" in r.getMessage() for r in errors)
