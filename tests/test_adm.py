"""guided-diffusion (ADM) checkpoints: conversion, learned variance and loading, against OpenAI's own code.

The oracle is ``guided_diffusion`` (guided-diffusion-sdk, a test dependency only): its ``UNetModel`` forward, and
``SpacedDiffusion.p_mean_variance`` / ``q_sample`` for the learned-range step and the whole RePaint loop.
"""

import json

import pytest
import torch
from _adm import gaussian_diffusion, randomise, save_checkpoint, script_util, tiny_adm, tiny_options
from diffusers import UNet2DModel

from repaint import convert


def _converted(model, o) -> UNet2DModel:
    config = convert.diffusers_config(o)
    unet = UNet2DModel(**{k: v for k, v in config.items() if k != "_class_name"})
    unet.load_state_dict(convert.convert_state_dict(model.state_dict(), o), strict=True)
    return unet.eval()


def _inputs(o, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, o["image_size"], o["image_size"], generator=g)
    t = torch.tensor([0, 499, 999][:batch])
    y = torch.randint(0, 1000, (batch,), generator=g) if o["class_cond"] else None
    return x, t, y


VARIANTS = {
    "legacy-order": {},
    "new-order": dict(use_new_attention_order=True),
    "class-cond": dict(class_cond=True),
    "no-resblock-updown": dict(resblock_updown=False),
    "no-scale-shift": dict(use_scale_shift_norm=False),
    "dropout-eval": dict(dropout=0.3),
    "fixed-heads": dict(num_head_channels=-1, num_heads=2, channel_mult="1,2,2"),  # one attention width: 64
    "fixed-sigma": dict(learn_sigma=False),
    "new-order-cond-plain-attention-everywhere": dict(
        use_new_attention_order=True, class_cond=True, resblock_updown=False, use_scale_shift_norm=False,
        attention_resolutions="16,8,4", num_head_channels=32),
}


@pytest.mark.parametrize("over", VARIANTS.values(), ids=VARIANTS.keys())
def test_forward_equals_guided_diffusion(over):
    """Every layer random (the zero-initialised output convs too): converted UNet2DModel == ADM, max diff 1e-5."""
    model, o = tiny_adm(**over)
    unet = _converted(model, o)
    x, t, y = _inputs(o)
    with torch.no_grad():
        want = model(x, t, y)
        got = unet(x, t, class_labels=y).sample
    assert want.shape == got.shape == (3, 6 if o["learn_sigma"] else 3, 16, 16)
    assert want.abs().max() > 1  # a real signal, not zeros through an untouched zero layer
    assert (want - got).abs().max() <= 1e-5


def test_legacy_qkv_is_split_per_head():
    """The trap: with several heads, splitting the legacy fused qkv with chunk(3) gives a different model."""
    model, o = tiny_adm()
    state = model.state_dict()
    wrong = convert.convert_state_dict(state, dict(o, use_new_attention_order=True))  # the chunk(3) layout
    unet = _converted(model, o)
    x, t, _ = _inputs(o)
    with torch.no_grad():
        good = unet(x, t).sample
        unet.load_state_dict(wrong)
        bad = unet(x, t).sample
    assert (good - bad).abs().max() > 1e-2


@pytest.mark.parametrize("over, words", [
    (dict(image_size=32, channel_mult="1,1,2,3", num_head_channels=-1, num_heads=4, attention_resolutions="8,4"),
     "fixed head count"),  # ADM 128's kind: 4 heads at widths 64 and 96
    (dict(channel_mult="0.5,1,2", num_channels=64), "channel_mult starts with 0.5"),  # ADM 512's kind
    (dict(num_heads_upsample=1, num_head_channels=-1, num_heads=2, channel_mult="1,2,2"), "fixed head count"),
])
def test_inexpressible_architectures_raise(over, words):
    with pytest.raises(convert.UnsupportedArchitecture, match=words):
        convert.diffusers_config(tiny_options(**over))


def test_released_128_and_512_presets_raise():
    for name in ("imagenet128", "imagenet512"):
        with pytest.raises(convert.UnsupportedArchitecture):
            convert.diffusers_config({**convert.DEFAULTS, **convert.PRESETS[name]})


def test_presets_build_guided_diffusions_architecture():
    """Each convertible preset's parameter count equals guided_diffusion's create_model with those options."""
    for name, preset in convert.PRESETS.items():
        o = {**convert.DEFAULTS, **preset}
        try:
            config = convert.diffusers_config(o)
        except convert.UnsupportedArchitecture:
            continue
        with torch.device("meta"):
            ours = UNet2DModel(**{k: v for k, v in config.items() if k != "_class_name"})
            theirs = script_util.create_model(**{k: o[k] for k in o if k not in ("diffusion_steps", "noise_schedule")})
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(ours) == count(theirs), name
    with torch.device("meta"):
        adm = UNet2DModel(**{k: v for k, v in convert.diffusers_config(
            {**convert.DEFAULTS, **convert.PRESETS["imagenet256_uncond"]}).items() if k != "_class_name"})
    assert sum(p.numel() for p in adm.parameters()) == 552_814_086  # the ADM-256 figure


def test_mismatched_options_raise(tmp_path):
    ckpt, _, o = save_checkpoint(tmp_path / "m.pt")
    for wrong in (dict(num_res_blocks=2), dict(num_res_blocks=0), dict(num_channels=64), dict(learn_sigma=False)):
        with pytest.raises(ValueError, match="does not match"):
            convert.convert_adm(ckpt, tmp_path / "out", **tiny_options(**wrong))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="not a known file name"):
        convert.convert_adm(ckpt, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown option"):
        convert.convert_adm(ckpt, tmp_path / "out", num_chanels=32)


def test_convert_writes_a_diffusers_folder(tmp_path):
    ckpt, model, o = save_checkpoint(tmp_path / "m.pt", class_cond=True)
    out = convert.convert_adm(ckpt, tmp_path / "out", **{k: o[k] for k in o if o[k] != convert.DEFAULTS[k]})
    assert sorted(p.name for p in out.iterdir()) == ["adm_options.json", "config.json",
                                                     "diffusion_pytorch_model.safetensors", "scheduler_config.json"]
    sched = json.loads((out / "scheduler_config.json").read_text())
    assert sched["variance_type"] == "learned_range" and sched["num_train_timesteps"] == 1000
    unet = UNet2DModel.from_pretrained(out).eval()
    x, t, y = _inputs(o)
    with torch.no_grad():
        assert (model(x, t, y) - unet(x, t, class_labels=y).sample).abs().max() <= 1e-5


def test_convert_command_line(tmp_path, capsys):
    ckpt, model, o = save_checkpoint(tmp_path / "m.pt", use_new_attention_order=True)
    args = [str(ckpt), str(tmp_path / "out"), "--image_size", "16", "--num_channels", "32", "--num_res_blocks", "1",
            "--channel_mult", "1,2,2", "--attention_resolutions", "8", "--num_head_channels", "16",
            "--learn_sigma", "true", "--resblock_updown", "True", "--use_new_attention_order", "true"]
    assert convert.main(args) == 0
    unet = UNet2DModel.from_pretrained(tmp_path / "out").eval()
    x, t, _ = _inputs(o)
    with torch.no_grad():
        assert (model(x, t) - unet(x, t).sample).abs().max() <= 1e-5
    assert convert.main([str(ckpt), str(tmp_path / "bad"), "--num_res_blocks", "3"]) == 2
    assert "error:" in capsys.readouterr().err


def test_schedule_equals_guided_diffusions_betas():
    from repaint.schedule import betas_from_config

    for schedule, steps in (("linear", 1000), ("linear", 500), ("cosine", 1000)):
        o = tiny_options(noise_schedule=schedule, diffusion_steps=steps)
        want = gaussian_diffusion.get_named_beta_schedule(schedule, steps)
        got = betas_from_config(convert.scheduler_config(o))
        assert abs(got - want).max() <= 1e-15, schedule


@pytest.mark.slow
def test_real_256_architecture_matches_at_batch_1():
    """The released ADM-256 architecture (552.8M parameters, random weights): exact at batch 1 (about 20 s a call)."""
    o = {**convert.DEFAULTS, **convert.PRESETS["imagenet256"]}
    model = script_util.create_model(**{k: o[k] for k in o if k not in ("diffusion_steps", "noise_schedule")})
    model = randomise(model).eval()
    unet = _converted(model, o)
    x, t, y = _inputs(o, batch=1)
    t = torch.tensor([500])
    with torch.no_grad():
        assert (model(x, t, y) - unet(x, t, class_labels=y).sample).abs().max() <= 1e-5
