"""Classifier guidance, the paper's ImageNet setting, against OpenAI's own code (guided-diffusion-sdk).

The oracle is ``guided_diffusion``: ``EncoderUNetModel`` (the classifier), ``GaussianDiffusion.condition_mean``
through ``SpacedDiffusion`` (which maps the respaced index to the training timestep for ``cond_fn``) with RePaint's
``cond_fn`` (its test.py), and the whole loop built from its primitives (:func:`test_reference.reference_repaint`).
"""

import dataclasses
import json

import numpy as np
import pytest
import torch
from _adm import classifier_folder, randomise, save_checkpoint, script_util, tiny_classifier
from _official import official_get_schedule_jump
from _reference import gd_diffusion, model_of, reference_repaint
from _tiny import tiny_unet

import repaint
from repaint import classifier as C
from repaint import convert, masks
from repaint.sampler import classifier_grad, denoise_step, sample_repaint
from repaint.schedule import noise_tables

SIZE = 16


def cond_fn_of(model, scale):
    """RePaint's test.py ``cond_fn`` (as guided-diffusion's classifier_sample.py), written from its text."""

    def cond_fn(x, t, y=None, **kwargs):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            logits = model(x_in, t)
            log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
            selected = log_probs[range(len(logits)), y.view(-1)]
            return torch.autograd.grad(selected.sum(), x_in)[0] * scale

    return cond_fn


def tiny_args(
    size=SIZE,
    width=32,
    channel_mult=(1, 2, 2),
    depth=1,
    attention_ds=(4,),
    head_channels=16,
    scale_shift=True,
    resblock_updown=True,
):
    return dict(
        size=size,
        width=width,
        channel_mult=channel_mult,
        depth=depth,
        attention_ds=attention_ds,
        head_channels=head_channels,
        scale_shift=scale_shift,
        resblock_updown=resblock_updown,
    )


def config_of(a: dict) -> dict:
    levels = [2**level in a["attention_ds"] for level in range(len(a["channel_mult"]))]
    return C.encoder_config(
        a["size"],
        a["width"],
        a["channel_mult"],
        a["depth"],
        levels,
        a["head_channels"],
        a["scale_shift"],
        a["resblock_updown"],
    )


def converted(model, a: dict) -> C.NoisyClassifier:
    config = config_of(a)
    return C.build(config, C.convert_classifier_state_dict(model.state_dict(), config)).eval()


VARIANTS = {
    "base": {},  # two 16-channel heads in the torso's legacy qkv order, four in the pool
    "depth-2": dict(depth=2),
    "no-scale-shift": dict(scale_shift=False),
    "no-resblock-updown": dict(resblock_updown=False),
    "attention-everywhere": dict(attention_ds=(1, 2, 4), head_channels=32),
    "one-head-32px": dict(size=32, channel_mult=(1, 1, 2, 2), attention_ds=(8,), head_channels=64, width=32),
    "plain-depth-3": dict(depth=3, scale_shift=False, resblock_updown=False, attention_ds=(2,)),
}


@pytest.mark.parametrize("over", VARIANTS.values(), ids=VARIANTS.keys())
def test_logits_equal_encoder_unet_model(over):
    """Every layer random: our classifier's logits == guided_diffusion's EncoderUNetModel's, 1e-5 relative."""
    a = tiny_args(**over)
    model = tiny_classifier(**a)
    ours = converted(model, a)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, a["size"], a["size"], generator=g)
    t = torch.tensor([0, 417, 999])
    with torch.no_grad():
        want, got = model(x, t), ours(x, t)
    assert want.shape == got.shape == (3, 1000)
    assert want.std() > 0.1  # a real signal through every layer
    assert (want - got).abs().max() <= 1e-5 * want.abs().max()


def test_legacy_qkv_is_split_per_head():
    """The torso's attention is in the legacy qkv order (per head q, k, v); the new order's split gives other logits."""
    a = tiny_args()
    model = tiny_classifier(**a)
    ours = converted(model, a)
    x, t = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)), torch.tensor([10, 900])
    with torch.no_grad():
        good = ours(x, t)
        for name, block in ours.named_modules():
            if name.endswith("attentions.0") and hasattr(block, "to_q"):
                w = torch.cat([block.to_q.weight, block.to_k.weight, block.to_v.weight])
                src = w.reshape(2, 3, -1, w.shape[1]).transpose(0, 1).reshape(w.shape)  # back to the legacy layout
                block.to_q.weight[:], block.to_k.weight[:], block.to_v.weight[:] = src.chunk(3)
        bad = ours(x, t)
    assert (good - bad).abs().max() > 1e-2


def test_presets_build_create_classifiers_architecture():
    """Each preset's parameter count equals guided_diffusion's create_classifier with its options; 256: 54.1M."""
    for name in C.CLASSIFIER_PRESETS:
        o = C.classifier_options(name, {})
        with torch.device("meta"):
            ours = C.build(C.classifier_config(o))
            theirs = script_util.create_classifier(classifier_use_fp16=False, **o)
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(ours) == count(theirs), name
        assert C.CLASSIFIER_FILES[f"{o['image_size']}x{o['image_size']}_classifier.pt"] == name
    with torch.device("meta"):
        assert (
            sum(
                p.numel()
                for p in C.build(C.classifier_config(C.classifier_options("imagenet256_classifier", {}))).parameters()
            )
            == 54_096_360
        )


def test_convert_classifier_options_preset_and_command_line(tmp_path, capsys):
    model = script_util.create_classifier(64, False, 32, 1, "8", True, True, "attention")
    model = randomise(model).eval()
    torch.save(model.state_dict(), tmp_path / "c.pt")
    options = dict(image_size=64, classifier_width=32, classifier_depth=1, classifier_attention_resolutions="8")
    out = repaint.convert_classifier(tmp_path / "c.pt", tmp_path / "out", **options)
    assert sorted(p.name for p in out.iterdir()) == [
        "adm_options.json",
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    assert json.loads((out / "config.json").read_text())["_class_name"] == "NoisyClassifier"
    x, t = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)), torch.tensor([5, 600])
    with torch.no_grad():
        want = model(x, t)
        assert (C.read_classifier(out)(x, t) - want).abs().max() <= 1e-5 * want.abs().max()
    # the command line: options by guided-diffusion's names, the checkpoint recognised by its tensors
    assert (
        convert.main(
            [
                str(tmp_path / "c.pt"),
                str(tmp_path / "cli"),
                "--image_size",
                "64",
                "--classifier_width",
                "32",
                "--classifier_depth",
                "1",
                "--classifier_attention_resolutions",
                "8",
            ]
        )
        == 0
    )
    with torch.no_grad():
        assert (C.read_classifier(tmp_path / "cli")(x, t) - want).abs().max() <= 1e-5 * want.abs().max()
    assert (
        convert.main([str(tmp_path / "c.pt"), str(tmp_path / "bad"), "--image_size", "64", "--classifier_depth", "2"])
        == 2
    )
    assert "does not match" in capsys.readouterr().err
    # a known file name gives its preset; a released name with a mismatching checkpoint says so
    (tmp_path / "64x64_classifier.pt").write_bytes((tmp_path / "c.pt").read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        repaint.convert_classifier(tmp_path / "64x64_classifier.pt", tmp_path / "x")
    with pytest.raises(ValueError, match="not a known classifier file name"):
        repaint.convert_classifier(tmp_path / "c.pt", tmp_path / "x")
    with pytest.raises(convert.UnsupportedArchitecture, match="only 'attention'"):
        repaint.convert_classifier(tmp_path / "c.pt", tmp_path / "x", classifier_pool="adaptive", **options)
    with pytest.raises(ValueError, match="unknown classifier option"):
        repaint.convert_classifier(tmp_path / "c.pt", tmp_path / "x", num_channels=32)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_real_256_classifier_matches_at_batch_2(tmp_path):
    """The released 256x256_classifier.pt architecture (54.1M parameters, random weights), saved under its released
    file name and converted by its preset through the command line: logits equal within 1e-5 relative."""
    o = C.classifier_options("imagenet256_classifier", {})
    model = randomise(script_util.create_classifier(classifier_use_fp16=False, **o)).eval()
    torch.save(model.state_dict(), tmp_path / "256x256_classifier.pt")
    assert convert.main([str(tmp_path / "256x256_classifier.pt"), str(tmp_path / "out")]) == 0
    ours = C.read_classifier(tmp_path / "out").eval()
    x, t = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(4)), torch.tensor([0, 999])
    with torch.no_grad():
        want, got = model(x, t), ours(x, t)
    assert want.std() > 0.1 and (want - got).abs().max() <= 1e-5 * want.abs().max()


# --- the guided step against guided_diffusion's condition_mean -------------------------------------------------------


@pytest.fixture(scope="module")
def pair():
    """(guided_diffusion's tiny classifier, ours converted from it)."""
    a = tiny_args()
    model = tiny_classifier(**a).requires_grad_(False)
    return model, converted(model, a).requires_grad_(False)


@pytest.mark.parametrize("variance_type", ["learned_range", "fixed_small", "fixed_large"])
def test_guided_mean_equals_condition_mean(pair, variance_type):
    """Same x_t and model output: our gradient equals RePaint's cond_fn at the training timestep SpacedDiffusion hands
    it, and our step's mean, moved by variance * gradient, equals guided-diffusion's condition_mean, at the first,
    middle and last levels (0 included)."""
    theirs, ours = pair
    steps, scale = 50, 3.0
    config = dict(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", variance_type=variance_type
    )
    tables = noise_tables(config, steps)
    diffusion = gd_diffusion("linear", variance_type, 1000, steps)
    c = [
        tables.alphas_cumprod.tolist(),
        tables.alphas_cumprod_prev.tolist(),
        tables.betas.tolist(),
        [tables.sigma(t) for t in range(steps)],
        *[b.tolist() for b in tables.log_variance_bounds()],
        tables.fixed_variance().tolist(),
    ]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, SIZE, SIZE, generator=g)
    v = torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1
    out = torch.randn(2, 3, SIZE, SIZE, generator=g)
    out = torch.cat([out, v], 1) if variance_type == "learned_range" else out
    y = torch.tensor([3, 871])
    seen = []
    cond_fn = cond_fn_of(lambda x_, t_: (seen.append(t_), theirs(x_, t_))[1], scale)
    fill = torch.ones(2, 1, SIZE, SIZE, dtype=torch.bool)
    shifts = {}
    for level in (49, 10, 1, 0):
        t = torch.tensor([level, level])
        ref = diffusion.p_mean_variance(lambda x_, t_: out, x, t, clip_denoised=True)
        want = diffusion.condition_mean(cond_fn, ref, x, t, model_kwargs={"y": y})
        train_t = torch.tensor([int(tables.timesteps[level])] * 2)
        assert seen[-1].tolist() == train_t.tolist()  # SpacedDiffusion's mapping: 0, 20, 41, ..., 999
        grad = classifier_grad(ours, x, train_t, y, scale)
        torch.testing.assert_close(grad, cond_fn(x, train_t, y=y), rtol=1e-4, atol=1e-6)
        assert grad.abs().max() > 1e-3
        mean, _ = denoise_step(x, out, torch.zeros_like(x), x, fill, [col[level] for col in c], level, tables, grad)
        torch.testing.assert_close(mean, want, rtol=1e-5, atol=1e-5)
        shifts[level] = float((want - ref["mean"]).abs().max())
    assert shifts[49] > 1e-2 and shifts[0] < shifts[10] < shifts[49]  # the guidance moves the mean, by the variance
    assert (shifts[0] == 0) == (variance_type == "fixed_small")  # whose level-0 value is 0 for fixed_small only


# --- the whole guided loop -------------------------------------------------------------------------------------------

GUIDED_CASES = {  # id: (variance type, steps, j, r per sample, mask per sample)
    "learned-r3-batch": ("learned_range", 6, 2, [3, 3], ["thick", "center_box"]),
    "learned-compare": ("learned_range", 6, 2, [3, 1], ["thin", "thin"]),
    "fixed-large-r2": ("fixed_large", 6, 2, [2], ["every_second_line"]),
    "fixed-small-compare": ("fixed_small", 6, 2, [2, 1], ["left_half", "left_half"]),
}


@pytest.mark.parametrize("case", list(GUIDED_CASES))
def test_guided_loop_equals_guided_diffusion_reference(pair, case):
    """The whole RePaint loop with classifier guidance (r > 1, j > 1, real masks, a batch, compare mode: chains at
    different levels in one batch) equals Algorithm 1 on guided-diffusion's primitives, its condition_mean with
    RePaint's cond_fn on guided_diffusion's own classifier, fed the same noise; and guidance changes the result."""
    theirs, ours = pair
    variance_type, steps, j, rs, mask_names = GUIDED_CASES[case]
    net = tiny_unet(SIZE).requires_grad_(False)
    unconditional = model_of(net, variance_type)
    model = lambda x, t, y=None: unconditional(x, t)  # noqa: E731  (the label is the classifier's only)
    config = dict(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", variance_type=variance_type
    )
    image = torch.rand(len(rs), 3, SIZE, SIZE, generator=torch.Generator().manual_seed(99)) * 2 - 1
    fill = torch.from_numpy(np.stack([masks.preset(m, SIZE, SIZE, seed=1) for m in mask_names]))[:, None]
    y = torch.tensor([5, 911][: len(rs)])
    seeds = [7 + i for i in range(len(rs))]
    schedules = [official_get_schedule_jump(steps, 1, j, r) for r in rs]
    scale = 2.0

    def ours_run(guide):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        x_T = torch.stack([torch.randn(3, SIZE, SIZE, generator=g) for g in gens])
        with torch.no_grad():
            return sample_repaint(
                model, x_T, image, fill, noise_tables(config, steps), schedules, gens, class_labels=y, guide=guide
            )

    calls = []
    guide = lambda x, t, labels: (calls.append(t.tolist()), classifier_grad(ours, x, t, labels, scale))[1]  # noqa
    got = ours_run(guide)
    assert len(calls) == max(repaint.count_model_calls(steps, j, r) for r in rs)  # every model step is guided
    diffusion = gd_diffusion("linear", variance_type, 1000, steps)
    ref = []
    with torch.no_grad():
        for b, s in enumerate(seeds):
            g = torch.Generator().manual_seed(s)
            x = torch.randn(1, 3, SIZE, SIZE, generator=g)
            ref.append(
                reference_repaint(
                    diffusion,
                    model,
                    x,
                    image[b : b + 1],
                    (~fill[b : b + 1]).float(),
                    schedules[b],
                    g,
                    True,
                    [],
                    cond_fn=cond_fn_of(theirs, scale),
                    model_kwargs={"y": y[b : b + 1]},
                )
            )
    ref = torch.cat(ref)
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-4)
    unguided = ours_run(None)
    assert (got - unguided).abs().max() > 1e-2  # guidance is not lost in the tolerance


# --- the package: scale 0 is the unguided run, loading, the registry -------------------------------------------------


@pytest.fixture(scope="module")
def released_like():
    """A tiny guided_diffusion classifier with create_classifier's 64-channel heads (what convert_classifier's
    options build: one head at width 64)."""
    return tiny_classifier(head_channels=64).requires_grad_(False)


@pytest.fixture(scope="module")
def guided_pipe(tmp_path_factory, released_like):
    """A tiny class-conditional ADM converted through repaint.convert_adm and a tiny classifier through
    repaint.convert_classifier, loaded together by repaint.load(..., classifier=FOLDER)."""
    tmp = tmp_path_factory.mktemp("guided")
    ckpt, _, o = save_checkpoint(tmp / "tiny.pt", class_cond=True)
    folder = repaint.convert_adm(ckpt, tmp / "unet", **{k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    return folder, classifier_folder(tmp, released_like)


def test_scale_zero_is_the_unguided_run_bit_for_bit(guided_pipe):
    folder, cls = guided_pipe
    plain = repaint.load(folder, device="cpu")
    guided = repaint.load(folder, device="cpu", classifier=cls)
    assert plain.classifier is None and guided.classifier is not None
    calls = []
    guided.classifier.register_forward_hook(lambda *a: calls.append(1))
    img = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    kw = dict(steps=8, jump_length=2, jump_n_sample=2, seed=3, num_samples=2, class_label=7)
    zero = guided.inpaint(img, "center_box", classifier_scale=0, **kw)
    assert not calls  # the classifier is not even called
    want = plain.inpaint(img, "center_box", **kw)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(zero, want))
    rgb, m = guided.prepare(img, "center_box")
    x = guided.sample(
        rgb, m, [repaint.jump_schedule(8, 2, 2)] * 2, [3, 4], class_labels=[7, 7], paste=False, classifier_scale=0.0
    )
    y = plain.sample(rgb, m, [repaint.jump_schedule(8, 2, 2)] * 2, [3, 4], class_labels=[7, 7], paste=False)
    assert np.array_equal(x, y)
    # unset: guided at 1, the paper's setting; compare mode gives the same images as the two inpaint calls
    default = guided.inpaint(img, "center_box", **kw)
    assert calls
    one = guided.inpaint(img, "center_box", classifier_scale=1.0, **kw)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(default, one))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(default, want))
    resampled, n1 = guided.compare(img, "center_box", classifier_scale=1.0, **kw)
    alone = guided.inpaint(img, "center_box", classifier_scale=1.0, **dict(kw, jump_n_sample=1))
    for got, ref in zip(resampled + n1, one + alone):
        assert np.abs(np.asarray(got).astype(int) - np.asarray(ref)).max() <= 1  # batch-size rounding only
        assert np.array_equal(np.asarray(got)[~m], rgb[~m])
    with pytest.raises(ValueError, match="classifier_scale"):
        guided.inpaint(img, "center_box", classifier_scale=-1, **kw)
    with pytest.raises(ValueError, match="has no classifier"):
        plain.inpaint(img, "center_box", classifier_scale=1, **kw)


def test_pipe_classifier_gives_logits_for_training_timesteps(guided_pipe, released_like):
    folder, cls = guided_pipe
    pipe = repaint.load(folder, device="cpu", classifier=cls)
    x, t = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6)), torch.tensor([999, 3])
    with torch.no_grad():
        want = released_like(x, t)
        assert (pipe.classifier(x, t) - want).abs().max() <= 1e-5 * want.abs().max()
    with pytest.raises(repaint.ModelLoadError, match="is for 16x16 images"):
        repaint.load("bundled", device="cpu", classifier=cls)
    with pytest.raises(repaint.ModelLoadError, match="unknown classifier"):
        repaint.load(folder, device="cpu", classifier="nope")


def test_unconditional_model_guided_by_a_classifier(released_like, tmp_path):
    """An unconditional model with a classifier (guided-diffusion's 256x256_diffusion_uncond + classifier): the
    classes are the classifier's, the UNet gets no label."""
    ckpt, _, o = save_checkpoint(tmp_path / "u.pt")
    folder = repaint.convert_adm(ckpt, tmp_path / "unet", **{k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    pipe = repaint.load(folder, device="cpu", classifier=classifier_folder(tmp_path, released_like))
    assert pipe.num_classes == 1000
    img = (np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8)
    a = pipe.inpaint(img, "left_half", steps=4, jump_length=2, jump_n_sample=1, class_label=1, classifier_scale=5)
    b = pipe.inpaint(img, "left_half", steps=4, jump_length=2, jump_n_sample=1, class_label=2, classifier_scale=5)
    assert not np.array_equal(np.asarray(a[0]), np.asarray(b[0]))


def test_registry_imagenet_is_guided_as_the_paper():
    info = repaint.MODELS["imagenet"]
    cls = repaint.CLASSIFIERS[info.classifier]
    assert cls.filename == "256x256_classifier.pt" and cls.url.endswith("/jul-2021/256x256_classifier.pt")
    assert C.CLASSIFIER_FILES[cls.filename] == cls.preset and cls.licence == "MIT" and cls.resolution == 256
    assert cls.download_mb == round(54_096_360 * 4 / 1e6)  # float32 weights
    assert "as the paper" in info.description


def test_registry_classifier_downloads_once_then_works_offline(tmp_path, monkeypatch, released_like, file_server):
    """A registry model guided by a registry classifier, both served by the loopback server: each downloaded and
    converted once, offline after; the default run is guided at 1."""
    www, url, asked, httpd = file_server
    _, _, o = save_checkpoint(www / "tiny_1000.pt", class_cond=True)
    torch.save(released_like.state_dict(), www / "tiny_classifier.pt")
    monkeypatch.setitem(convert.PRESETS, "tiny", {k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    monkeypatch.setitem(
        C.CLASSIFIER_PRESETS,
        "tinycls",
        dict(image_size=SIZE, classifier_width=32, classifier_depth=1, classifier_attention_resolutions="4"),
    )
    monkeypatch.setitem(C.CHANNEL_MULT, SIZE, (1, 2, 2))
    monkeypatch.setitem(
        repaint.CLASSIFIERS,
        "tinycls",
        dataclasses.replace(
            repaint.CLASSIFIERS["imagenet256"],
            name="tinycls",
            url=f"{url}/tiny_classifier.pt",
            filename="tiny_classifier.pt",
            preset="tinycls",
            resolution=SIZE,
            download_mb=1,
        ),
    )
    monkeypatch.setitem(
        repaint.MODELS,
        "tinyadm",
        repaint.ModelInfo(
            "tinyadm",
            None,
            SIZE,
            "test",
            "MIT",
            url=f"{url}/tiny_1000.pt",
            filename="tiny_1000.pt",
            preset="tiny",
            source="the test server",
            download_mb=1,
            num_classes=1000,
            classifier="tinycls",
        ),
    )
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    pipe = repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf")
    assert sorted(asked) == ["/tiny_1000.pt", "/tiny_classifier.pt"]
    assert pipe.classifier is not None and pipe.check_scale(None) == 1.0
    assert not list((tmp_path / "hf").rglob("*.pt"))  # converted, then dropped
    httpd.shutdown()  # the model host goes away: what follows is offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf")
    assert len(asked) == 2
    x, t = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(8)), torch.tensor([250])
    with torch.no_grad():
        want = released_like(x, t)
        assert (again.classifier(x, t) - want).abs().max() <= 1e-5 * want.abs().max()
    unguided = repaint.load("tinyadm", device="cpu", cache_dir=tmp_path / "hf", classifier=False)
    assert unguided.classifier is None and unguided.check_scale(None) == 0.0


def test_cli_and_folder_mode_take_the_classifier_and_its_scale(guided_pipe, tmp_path, capsys):
    from PIL import Image

    from repaint.__main__ import main
    from repaint.folder import image_seed, inpaint_folder, read_manifest

    folder, cls = guided_pipe
    img = (np.random.default_rng(4).random((16, 16, 3)) * 255).astype(np.uint8)
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
        "--class-label",
        "5",
        "--classifier",
        str(cls),
    ]
    assert main(common + ["--out", str(tmp_path / "a.png"), "--classifier-scale", "2.5"]) == 0
    pipe = repaint.load(folder, device="cpu", classifier=cls)
    kw = dict(steps=4, jump_length=2, jump_n_sample=2, class_label=5)
    (want,) = pipe.inpaint(img, "left_half", classifier_scale=2.5, **kw)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(want))
    assert main(common + ["--out", str(tmp_path / "b.png"), "--classifier-scale", "0"]) == 0
    (plain,) = pipe.inpaint(img, "left_half", classifier_scale=0, **kw)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), np.asarray(plain))
    assert main(common + ["--out", str(tmp_path / "c.png"), "--classifier-scale", "-1"]) == 2
    assert "classifier_scale must be" in capsys.readouterr().err

    (tmp_path / "imgs").mkdir()
    Image.fromarray(img).save(tmp_path / "imgs" / "x.png")
    for scale in (None, 0.0):
        out = tmp_path / f"out{scale}"
        inpaint_folder(
            pipe,
            tmp_path / "imgs",
            out,
            preset="left_half",
            steps=4,
            jump_length=2,
            jump_n_sample=2,
            class_label=5,
            classifier_scale=scale,
            progress=False,
        )
        assert read_manifest(out)["inpainted/x.png"]["settings"]["classifier_scale"] == (1.0 if scale is None else 0)
    rgb, m = pipe.prepare(img, "left_half", seed=image_seed(0, "x"))
    for scale, name in ((1.0, "outNone"), (0.0, "out0.0")):
        (want,) = pipe.sample(
            rgb, m, [repaint.jump_schedule(4, 2, 2)], [image_seed(0, "x", 0)], class_labels=[5], classifier_scale=scale
        )
        assert np.array_equal(np.asarray(Image.open(tmp_path / name / "inpainted" / "x.png")), want)


def test_registry_classifier_tflop_is_a_flop_count_of_forward_and_input_gradient():
    """The classifier's registry TFLOP (added to imagenet's ZeroGPU slot) against torch's FLOP counter on its
    architecture (meta device): forward, then the backward to the input only (the parameters need no gradient)."""
    from torch.utils.flop_counter import FlopCounterMode

    from repaint import space

    info = repaint.CLASSIFIERS["imagenet256"]
    with torch.device("meta"):
        model = C.build(C.classifier_config(C.classifier_options(info.preset, {}))).requires_grad_(False)
        x = torch.zeros(1, 3, 256, 256, requires_grad=True)
        with FlopCounterMode(display=False) as forward:
            logits = model(x, torch.zeros(1, dtype=torch.long))
        with FlopCounterMode(display=False) as both:
            torch.log_softmax(model(x, torch.zeros(1, dtype=torch.long)), -1)[:, 0].sum().backward()
    assert forward.get_total_flops() / 1e12 == pytest.approx(0.147, rel=0.01)  # the "about 0.15"
    assert info.tflop == pytest.approx(both.get_total_flops() / 1e12, rel=0.01)
    assert logits.shape == (1, 1000)
    guess = space.zerogpu_guess("imagenet")
    assert guess == pytest.approx(space.zerogpu_guess("imagenet_uncond") * (2.24 + info.tflop) / 2.24)
