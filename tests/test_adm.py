"""guided-diffusion (ADM) checkpoints: conversion, learned variance and loading, against OpenAI's own code.

The oracle is ``guided_diffusion`` (guided-diffusion-sdk, a test dependency only): its ``UNetModel`` forward, and
``SpacedDiffusion.p_mean_variance`` / ``q_sample`` for the learned-range step and the whole RePaint loop.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from _adm import gaussian_diffusion, randomise, save_checkpoint, script_util, tiny_adm, tiny_options
from diffusers import RePaintScheduler, UNet2DModel

import repaint
from repaint import convert
from repaint.sampler import ddpm_step, learned_sigma, sample_repaint
from repaint.schedule import jump_schedule, noise_tables


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
        use_new_attention_order=True,
        class_cond=True,
        resblock_updown=False,
        use_scale_shift_norm=False,
        attention_resolutions="16,8,4",
        num_head_channels=32,
    ),
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


@pytest.mark.parametrize(
    "over, words",
    [
        (
            dict(image_size=32, channel_mult="1,1,2,3", num_head_channels=-1, num_heads=4, attention_resolutions="8,4"),
            "fixed head count",
        ),  # ADM 128's kind: 4 heads at widths 64 and 96
        (dict(channel_mult="0.5,1,2", num_channels=64), "channel_mult starts with 0.5"),  # ADM 512's kind
        (dict(num_heads_upsample=1, num_head_channels=-1, num_heads=2, channel_mult="1,2,2"), "fixed head count"),
    ],
)
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
        adm = UNet2DModel(
            **{
                k: v
                for k, v in convert.diffusers_config(
                    {**convert.DEFAULTS, **convert.PRESETS["imagenet256_uncond"]}
                ).items()
                if k != "_class_name"
            }
        )
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
    assert sorted(p.name for p in out.iterdir()) == [
        "adm_options.json",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "scheduler_config.json",
    ]
    sched = json.loads((out / "scheduler_config.json").read_text())
    assert sched["variance_type"] == "learned_range" and sched["num_train_timesteps"] == 1000
    unet = UNet2DModel.from_pretrained(out).eval()
    x, t, y = _inputs(o)
    with torch.no_grad():
        assert (model(x, t, y) - unet(x, t, class_labels=y).sample).abs().max() <= 1e-5


def test_convert_command_line(tmp_path, capsys):
    ckpt, model, o = save_checkpoint(tmp_path / "m.pt", use_new_attention_order=True)
    args = [
        str(ckpt),
        str(tmp_path / "out"),
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
        "True",
        "--use_new_attention_order",
        "true",
    ]
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
def test_real_256_architecture_matches_at_batch_1(tmp_path):
    """The released ADM-256 architecture (class-conditional, 553.8M parameters, random weights), saved under its
    released file name and opened with repaint.load (preset from the name, converted into the cache): exact at
    batch 1. About 20 s per forward call on this CPU and about 7 GB of memory at the peak."""
    o = {**convert.DEFAULTS, **convert.PRESETS["imagenet256"]}
    model = script_util.create_model(**{k: o[k] for k in o if k not in ("diffusion_steps", "noise_schedule")})
    model = randomise(model).eval()
    torch.save(model.state_dict(), tmp_path / "256x256_diffusion.pt")
    pipe = repaint.load(tmp_path / "256x256_diffusion.pt", device="cpu", cache_dir=tmp_path / "hf")
    assert pipe.num_classes == 1000 and pipe.learned_variance and pipe.resolution == 256
    x, _, y = _inputs(o, batch=1)
    t = torch.tensor([500])
    with torch.no_grad():
        assert (model(x, t, y) - pipe.unet(x, t, class_labels=y).sample).abs().max() <= 1e-5


# --- the learned-range step against SpacedDiffusion.p_mean_variance -------------------------------------------------


def _spaced(steps: int, schedule: str = "linear"):
    return script_util.create_gaussian_diffusion(
        steps=1000, learn_sigma=True, noise_schedule=schedule, timestep_respacing=str(steps)
    )


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_learned_range_step_equals_p_mean_variance(schedule):
    """Same x_t and model output (eps, v): our step's mean and log variance equal guided-diffusion's
    p_mean_variance on the respaced chain, at the first level, middle levels and the last two (1 and 0)."""
    steps = 50
    diffusion = _spaced(steps, schedule)
    tables = noise_tables(convert.scheduler_config(tiny_options(noise_schedule=schedule)), steps)
    assert tables.timesteps.tolist() == sorted(diffusion.timestep_map)
    min_log, max_log = tables.log_variance_bounds()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g)
    out = torch.cat([torch.randn(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g) * 2 - 1], dim=1)
    seen = []
    model = lambda x_, ts: (seen.append(ts), out)[1]  # noqa: E731
    for level in (49, 30, 10, 2, 1, 0):
        ref = diffusion.p_mean_variance(model, x, torch.tensor([level, level]), clip_denoised=True)
        assert seen[-1].tolist() == [tables.timesteps[level]] * 2  # the model sees the same training timestep
        sigma = learned_sigma(out[:, 3:], min_log[level], max_log[level])
        mean, x0 = ddpm_step(
            x,
            out[:, :3],
            tables.alphas_cumprod[level],
            tables.alphas_cumprod_prev[level],
            tables.betas[level],
            sigma,
            torch.zeros_like(x),
            tables.clip_sample,
        )
        torch.testing.assert_close(x0, ref["pred_xstart"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(mean, ref["mean"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(2 * sigma.log(), ref["log_variance"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("steps", [2, 250])  # 2: the smallest chain with a level 1 to clip level 0 to
def test_log_variance_bounds_equal_guided_diffusions_tables(steps):
    diffusion = _spaced(steps)
    tables = noise_tables(convert.scheduler_config(tiny_options()), steps)
    min_log, max_log = tables.log_variance_bounds()
    assert abs(min_log - diffusion.posterior_log_variance_clipped).max() <= 1e-12
    assert abs(max_log - np.log(diffusion.betas)).max() <= 1e-12


def test_learned_range_with_one_level_is_the_clipped_x0():
    """One level (guided_diffusion cannot build its clipped log variance there: it has no level 1): the only step is
    level 0 -> -1, where abar_prev = 1, so DDPM eq. 7's posterior mean is x_0 itself and no noise is added; the filled
    pixels are clip((x_T - sqrt(1 - abar_0) eps) / sqrt(abar_0)) (DDPM eq. 15), whatever v is."""
    tables = noise_tables(convert.scheduler_config(tiny_options()), 1)
    abar = float(tables.alphas_cumprod[0])
    g = torch.Generator().manual_seed(4)
    x, image, eps = (torch.randn(1, 3, 4, 4, generator=g) for _ in range(3))
    v = torch.rand(1, 3, 4, 4, generator=g) * 2 - 1
    fill = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    ours = sample_repaint(lambda x_, t: torch.cat([eps, v], 1), x, image, fill, tables, [[0, -1]], [g])
    torch.testing.assert_close(ours, ((x - (1 - abar) ** 0.5 * eps) / abar**0.5).clamp(-1, 1), rtol=1e-6, atol=1e-6)


# --- the whole RePaint loop against a reference built from guided_diffusion ------------------------------------------


def _official_levels(steps, j, r):
    """The jump schedule as diffusers' RePaintScheduler lays it out (an independent copy of get_schedule_jump)."""
    sched = RePaintScheduler(num_train_timesteps=1000)
    sched.set_timesteps(steps, j, r)
    return (sched.timesteps.numpy() // (1000 // steps)).tolist() + [-1]


def _reference_repaint(diffusion, model, x, image, fill, path, gen, y=None):
    """Algorithm 1 with resampling, every quantity from guided_diffusion: p_mean_variance for the unknown part,
    q_sample for the known part (the same noise draw, disjoint pixels), the respaced betas for the forward jumps."""
    kwargs = {} if y is None else {"y": y}
    for a, b in zip(path, path[1:]):
        noise = torch.randn(x.shape[1:], generator=gen)[None]
        if b == a + 1:
            beta = float(diffusion.betas[b])
            x = (1 - beta) ** 0.5 * x + beta**0.5 * noise
            continue
        out = diffusion.p_mean_variance(model, x, torch.tensor([a]), clip_denoised=True, model_kwargs=kwargs)
        unknown = out["mean"] + (a != 0) * torch.exp(0.5 * out["log_variance"]) * noise
        known = diffusion.q_sample(image, torch.tensor([b]), noise) if b >= 0 else image
        x = torch.where(fill, unknown, known)
    return x


@pytest.fixture(scope="module")
def adm_folder(tmp_path_factory):
    """A tiny class-conditional ADM checkpoint, converted through repaint.convert_adm."""
    tmp = tmp_path_factory.mktemp("adm")
    ckpt, model, o = save_checkpoint(tmp / "tiny.pt", class_cond=True)
    return repaint.convert_adm(ckpt, tmp / "tiny", **{k: v for k, v in o.items() if v != convert.DEFAULTS[k]}), model


@pytest.mark.parametrize("steps, j, r", [(20, 5, 3), (12, 1, 1)])
def test_repaint_loop_equals_guided_diffusion_reference(adm_folder, steps, j, r):
    """The sampler with the converted model, fed the same noise draws, follows the reference chain step for step;
    known pixels of the result are the image exactly."""
    folder, model = adm_folder
    pipe = repaint.load(folder, device="cpu")
    assert pipe.learned_variance and pipe.num_classes == 1000
    diffusion = _spaced(steps)
    path = _official_levels(steps, j, r)
    assert path == jump_schedule(steps, j, r)
    g = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    fill = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    fill[..., 4:12, 2:9] = True
    y = torch.tensor([417])
    x_t = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    ours = sample_repaint(
        pipe.eps,
        x_t,
        image,
        fill,
        noise_tables(pipe.scheduler_config, steps),
        [path],
        [torch.Generator().manual_seed(11)],
        class_labels=y,
    )
    with torch.no_grad():
        ref = _reference_repaint(diffusion, model, x_t, image, fill, path, torch.Generator().manual_seed(11), y)
    assert torch.equal(ours[~fill.expand_as(ours)], image[~fill.expand_as(image)])
    assert (ours - ref).abs().max() <= 1e-4
    assert (ours - image).abs()[fill.expand_as(ours)].mean() > 0.05  # the filled part is the model's, not the image


def test_inpaint_with_a_converted_checkpoint(adm_folder):
    """repaint.load + inpaint/compare on a learned-variance, class-conditional ADM: known pixels exact, compare mode
    equals separate runs, the class label changes the filling, a random class is drawn from the seed.

    Compare mode batches the n=1 chain with the others, and this model's attention gives a row's output with
    ~3e-6 differences at another batch size; so filled pixels may differ by one uint8 level, never more."""
    folder, _ = adm_folder
    pipe = repaint.load(folder, device="cpu")
    img = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    kw = dict(steps=8, jump_length=2, seed=3, num_samples=2)
    resampled, plain = pipe.compare(img, "center_box", jump_n_sample=3, class_label=7, **kw)
    rgb, m = pipe.prepare(img, "center_box")
    for got, want in zip(
        resampled + plain,
        pipe.inpaint(img, "center_box", jump_n_sample=3, class_label=7, **kw)
        + pipe.inpaint(img, "center_box", jump_n_sample=1, class_label=7, **kw),
    ):
        assert np.abs(np.asarray(got).astype(int) - np.asarray(want)).max() <= 1
        assert np.array_equal(np.asarray(got)[~m], rgb[~m])
        assert got.info["class_label"] == 7
    other = pipe.inpaint(img, "center_box", jump_n_sample=3, class_label=8, **kw)
    assert not np.array_equal(np.asarray(other[0]), np.asarray(resampled[0]))
    drawn = pipe.inpaint(img, "center_box", jump_n_sample=1, **kw)
    assert [d.info["class_label"] for d in drawn] == pipe.class_labels([3, 4])
    again = pipe.inpaint(img, "center_box", jump_n_sample=1, class_label=drawn[1].info["class_label"], **kw)
    assert np.array_equal(np.asarray(again[1]), np.asarray(drawn[1]))
    with pytest.raises(ValueError, match="class_label"):
        pipe.inpaint(img, "center_box", class_label=1000, **kw)


def test_unconditional_model_refuses_a_class_label():
    pipe = repaint.load("bundled", device="cpu")
    assert pipe.num_classes == 0 and not pipe.learned_variance
    with pytest.raises(ValueError, match="not class-conditional"):
        pipe.inpaint(np.zeros((32, 32, 3), np.uint8), "left_half", steps=2, jump_length=1, class_label=3)


def test_sampler_checks_the_output_channels():
    tables = noise_tables(convert.scheduler_config(tiny_options()), 4)
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="returned 3 channels"):
        sample_repaint(
            lambda x_, t: x_,
            x,
            x,
            torch.ones(1, 1, 4, 4, dtype=torch.bool),
            tables,
            [jump_schedule(4, 1, 1)],
            [torch.Generator()],
        )


# --- registry: download once into the cache (a loopback HTTP server), convert once, offline after ------------------


@pytest.fixture()
def tiny_entry(monkeypatch, file_server):
    """A registry entry for a tiny ADM served by the loopback server, with a preset for its architecture."""
    www, url, asked, httpd = file_server
    _, model, o = save_checkpoint(www / "tiny_1000.pt")
    monkeypatch.setitem(convert.PRESETS, "tiny", {k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    info = repaint.ModelInfo(
        "tinyadm",
        None,
        16,
        "test",
        "MIT",
        url=f"{url}/tiny_1000.pt",
        filename="tiny_1000.pt",
        preset="tiny",
        source="the test server",
        download_mb=1,
    )
    monkeypatch.setitem(repaint.MODELS, "tinyadm", info)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return info, model, asked, httpd


def test_registry_model_downloads_once_then_works_offline(tmp_path, tiny_entry, monkeypatch, capsys):
    info, model, asked, httpd = tiny_entry
    cache = tmp_path / "hf"
    pipe = repaint.load("tinyadm", device="cpu", cache_dir=cache)
    assert asked == ["/tiny_1000.pt"]
    if not os.environ.get("TQDM_DISABLE"):  # tqdm reads it once, at import
        assert "download tinyadm" in capsys.readouterr().err  # the progress bar
    folder = cache / "repaint-adm" / "tinyadm" / "diffusers"
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    assert not (cache / "repaint-adm" / "tinyadm" / "tiny_1000.pt").exists()  # converted, then dropped
    x, t, _ = _inputs(tiny_options())
    with torch.no_grad():
        assert (pipe.unet(x, t).sample - model(x, t)).abs().max() <= 1e-5
    httpd.shutdown()  # no network from now on
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = repaint.load("tinyadm", device="cpu", cache_dir=cache)
    assert asked == ["/tiny_1000.pt"] and again.learned_variance
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    (out,) = again.inpaint(img, "left_half", steps=6, jump_length=2, jump_n_sample=2)
    rgb, m = again.prepare(img, "left_half")
    assert np.array_equal(np.asarray(out)[~m], rgb[~m])


def test_failed_download_names_the_source_and_the_manual_route(tmp_path, tiny_entry, monkeypatch):
    info, _, asked, _ = tiny_entry
    monkeypatch.setitem(repaint.MODELS, "tinyadm", dataclasses.replace(info, url=info.url.replace("tiny_", "gone_")))
    with pytest.raises(repaint.ModelLoadError) as e:
        repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf")
    text = str(e.value)
    assert "gone_1000.pt" in text and "HTTPError" in text and "python -m repaint.convert tiny_1000.pt" in text
    assert not list((tmp_path / "hf").rglob("*.pt"))  # no partial file left as if complete
    (tmp_path / "www" / "quota.html").write_text("<html>Google Drive: quota exceeded</html>")
    monkeypatch.setitem(
        repaint.MODELS, "tinyadm", dataclasses.replace(info, url=info.url.replace("tiny_1000.pt", "quota.html"))
    )
    with pytest.raises(repaint.ModelLoadError, match="a web page, not the file"):
        repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf")
    assert not [p for p in (tmp_path / "hf").rglob("*") if p.is_file()]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(repaint.ModelLoadError, match="HF_HUB_OFFLINE.*the test server"):
        repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf")


def test_known_checkpoint_file_name_applies_its_preset(tmp_path, monkeypatch):
    ckpt, model, o = save_checkpoint(tmp_path / "tiny_1000.pt")
    monkeypatch.setitem(convert.PRESETS, "tiny", {k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    monkeypatch.setitem(convert.KNOWN_FILES, "tiny_1000.pt", "tiny")
    pipe = repaint.load(str(ckpt), device="cpu", cache_dir=tmp_path / "hf")
    x, t, _ = _inputs(o)
    with torch.no_grad():
        assert (pipe.unet(x, t).sample - model(x, t)).abs().max() <= 1e-5
    assert len(list((tmp_path / "hf" / "repaint-adm" / "files").iterdir())) == 1
    repaint.load(str(ckpt), device="cpu", cache_dir=tmp_path / "hf")  # converted once: found in the cache
    assert len(list((tmp_path / "hf" / "repaint-adm" / "files").iterdir())) == 1
    other = tmp_path / "other.pt"
    other.write_bytes(ckpt.read_bytes())
    with pytest.raises(repaint.ModelLoadError, match="not a known checkpoint name"):
        repaint.load(str(other), device="cpu", cache_dir=tmp_path / "hf")


def test_registry_entries_of_the_released_checkpoints():
    for name, preset, classes in (
        ("places2", "places256", 0),
        ("celeba256", "celeba256", 0),
        ("imagenet", "imagenet256", 1000),
        ("imagenet_uncond", "imagenet256_uncond", 0),
    ):
        info = repaint.MODELS[name]
        assert info.preset == preset and convert.KNOWN_FILES[info.filename] == preset
        assert info.num_classes == classes and info.gpu_only and info.resolution == 256
        assert info.url.startswith("https://") and info.source and info.download_mb and info.licence != "unknown"
        config = convert.diffusers_config({**convert.DEFAULTS, **convert.PRESETS[preset]})
        assert (config["num_class_embeds"] or 0) == classes


def test_dtype_option(adm_folder):
    folder, _ = adm_folder
    if torch.cuda.is_available():
        assert repaint.models.default_dtype("cuda") in (torch.bfloat16, torch.float16)
    assert repaint.models.default_dtype("cpu") == torch.float32
    pipe = repaint.load(folder, device="cpu", dtype="bfloat16")
    assert pipe.dtype == torch.bfloat16
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    (out,) = pipe.inpaint(img, "left_half", steps=4, jump_length=2, jump_n_sample=2, class_label=1)
    rgb, m = pipe.prepare(img, "left_half")
    assert np.array_equal(np.asarray(out)[~m], rgb[~m])
    with pytest.raises(ValueError, match="dtype"):
        repaint.load(folder, device="cpu", dtype="float8")


def test_cli_class_label_and_dtype(adm_folder, tmp_path, capsys):
    from PIL import Image

    from repaint.__main__ import main

    folder, _ = adm_folder
    img = (np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    common = [
        "--image",
        str(tmp_path / "in.png"),
        "--preset",
        "left_half",
        "--model",
        str(folder),
        "--steps",
        "4",
        "--jump-length",
        "2",
        "--jump-n-sample",
        "2",
    ]
    assert main(common + ["--out", str(tmp_path / "a.png"), "--class-label", "5", "--dtype", "float32"]) == 0
    pipe = repaint.load(folder, device="cpu")
    (want,) = pipe.inpaint(img, "left_half", steps=4, jump_length=2, jump_n_sample=2, class_label=5)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(want))
    assert main(common + ["--out", str(tmp_path / "b.png"), "--class-label", "1000"]) == 2
    assert "class_label must be an integer from 0 to 999" in capsys.readouterr().err
