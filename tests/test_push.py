"""``python -m repaint.convert CKPT OUT --push-to-hub OWNER/NAME`` (issue 18): the converted folder and its model
card arrive on a Hub server, byte for byte.

Tested against a loopback server that speaks the Hub's upload protocol (tests/_hub.py: create_repo, validate-yaml,
preupload, git-lfs batch/upload/verify, the NDJSON commit), through the real ``huggingface_hub`` client. Only its
xet transfer is switched off (``HF_HUB_DISABLE_XET``): hf_xet's storage protocol cannot be served here, and without
it huggingface_hub uploads the weights through git-lfs, which the Hub also accepts.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from _adm import save_checkpoint, tiny_options
from diffusers import UNet2DModel

from repaint import convert


def _front_matter(text: str) -> dict:
    return yaml.safe_load(re.match(r"---\n(.*?)\n---\n", text, re.S).group(1))


def test_push_to_hub_uploads_the_folder_and_its_card(tmp_path, hub, monkeypatch):
    ckpt, model, o = save_checkpoint(tmp_path / "places256_300000.pt")  # a released name: its licence is known
    monkeypatch.setitem(convert.PRESETS, "places256", {k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    out = tmp_path / "places2"
    argv = [str(ckpt), str(out), "--push-to-hub", "someone/repaint-places2"]
    monkeypatch.setenv("HF_TOKEN", "hf_loopback")
    assert convert.main(argv) == 0
    files = hub.repos["someone/repaint-places2"]
    local = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(local) == {
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "scheduler_config.json",
        "adm_options.json",
    }
    assert files == local  # every file arrived, byte for byte
    assert any(r.startswith("PUT /lfs/") for r in hub.requests), "the weights went through git-lfs"
    assert hub.auth == {"Bearer hf_loopback"}
    assert [(c["organization"], c["name"], c["visibility"]) for c in hub.created] == [
        ("someone", "repaint-places2", "public")
    ]

    card = files["README.md"].decode()
    meta = _front_matter(card)
    assert meta["license"] == "cc-by-nc-sa-4.0" and meta["library_name"] == "diffusers"
    assert "github.com/andreas128/RePaint" in card and "CC BY-NC-SA 4.0" in card
    assert "python -m repaint.convert places256_300000.pt OUT --preset places256" in card
    assert f'"num_channels": {o["num_channels"]}' in card  # the conversion options
    n_tensors = len(torch.load(ckpt, weights_only=True))
    assert f"checkpoint's {n_tensors} tensors" in card and "bit for bit" in card  # the exactness check
    assert json.loads(files["adm_options.json"])["preset"] == "places256"

    # what arrived is the model: it loads and equals guided-diffusion's
    (tmp_path / "arrived").mkdir()
    for name, data in files.items():
        (tmp_path / "arrived" / name).write_bytes(data)
    unet = UNet2DModel.from_pretrained(tmp_path / "arrived").eval()
    x, t = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    with torch.no_grad():
        assert (unet(x, t).sample - model(x, t)).abs().max() <= 1e-5

    assert convert.main(argv) == 0  # a second push to the existing repository: create_repo's 409 is accepted
    assert len(hub.commits) >= 1


def test_a_pushed_mirror_is_downloaded_and_loaded_as_the_registry_model(tmp_path, hub, monkeypatch):
    """Issue 29: the mirror's layout (configs and safetensors at the root, no model_index.json) through the same
    loader as the google/ddpm-* repositories, from the Hub it was pushed to: only what the load reads comes back."""
    import repaint

    ckpt, model, o = save_checkpoint(tmp_path / "places256_300000.pt")
    monkeypatch.setitem(convert.PRESETS, "places256", {k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    assert convert.main([str(ckpt), str(tmp_path / "places2"), "--push-to-hub", "someone/repaint-places2"]) == 0
    monkeypatch.setenv("REPAINT_HUB_MIRROR_PLACES2", "someone/repaint-places2")
    pushed = len(hub.requests)
    pipe = repaint.load("places2", device="cpu", cache_dir=tmp_path / "cache")
    gets = {path for _, path in hub.sent(since=pushed)}
    assert gets == {"config.json", "scheduler_config.json", "diffusion_pytorch_model.safetensors"}
    assert pipe.learned_variance and pipe.resolution == o["image_size"]
    x, t = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    with torch.no_grad():
        assert (pipe.unet(x, t).sample - model(x, t)).abs().max() <= 1e-5


def test_openai_checkpoints_are_mit_and_unknown_files_need_a_licence(tmp_path, hub, monkeypatch, capsys):
    _, _, o = save_checkpoint(tmp_path / "256x256_diffusion_uncond.pt")
    out = convert.convert_adm(tmp_path / "256x256_diffusion_uncond.pt", tmp_path / "out", **tiny_options())
    card = convert.model_card(out, convert.check_conversion(tmp_path / "256x256_diffusion_uncond.pt", out))
    assert _front_matter(card)["license"] == "mit" and "github.com/openai/guided-diffusion" in card

    ckpt, _, _ = save_checkpoint(tmp_path / "mine.pt")
    flags = [
        "--image_size",
        "16",
        "--num_channels",
        "32",
        "--num_res_blocks",
        "1",
        "--channel_mult",
        "1,2,2",
        "--attention_resolutions",
        "8",
        "--num_head_channels",
        "16",
        "--learn_sigma",
        "true",
        "--resblock_updown",
        "true",
    ]
    with pytest.raises(SystemExit):
        convert.main([str(ckpt), str(tmp_path / "mine"), "--push-to-hub", "someone/mine", *flags])
    assert "give --license" in capsys.readouterr().err and not hub.repos
    argv = [
        str(ckpt),
        str(tmp_path / "mine"),
        "--push-to-hub",
        "someone/mine",
        "--license",
        "mit",
        "--source",
        "my own training run",
        *flags,
    ]
    assert convert.main(argv) == 0
    card = hub.repos["someone/mine"]["README.md"].decode()
    assert _front_matter(card)["license"] == "mit" and "my own training run" in card
    assert "--num_channels 32" in card and "--learn_sigma true" in card


def test_the_check_refuses_a_folder_that_differs_from_its_checkpoint(tmp_path):
    from safetensors.torch import load_file, save_file

    ckpt, _, o = save_checkpoint(tmp_path / "m.pt")
    out = convert.convert_adm(ckpt, tmp_path / "out", **tiny_options())
    check = convert.check_conversion(ckpt, out)
    assert check["values"] == sum(v.numel() for v in torch.load(ckpt, weights_only=True).values())
    weights = load_file(out / "diffusion_pytorch_model.safetensors")
    key = sorted(weights)[0]
    weights[key] = weights[key].clone()
    weights[key].view(-1)[0] = torch.nextafter(weights[key].view(-1)[0], torch.tensor(float("inf")))  # one ulp
    save_file(weights, out / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match="1 tensors differ"):
        convert.check_conversion(ckpt, out)


def test_a_failed_upload_says_so_and_keeps_the_folder(tmp_path, hub, monkeypatch, capsys):
    ckpt, _, o = save_checkpoint(tmp_path / "celeba256_250000.pt")
    monkeypatch.setitem(convert.PRESETS, "celeba256", {k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    hub.__exit__()  # the server is gone
    assert convert.main([str(ckpt), str(tmp_path / "out"), "--push-to-hub", "someone/x"]) == 2
    err = capsys.readouterr().err
    assert "upload to someone/x failed" in err and "hf upload someone/x" in err
    assert (tmp_path / "out" / "README.md").is_file() and (tmp_path / "out" / "config.json").is_file()
