"""The inpainting pipeline: a loaded model that fills a masked image with RePaint."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import images, masks, window
from .sampler import Callback, Chain, classifier_grad, run_chain
from .schedule import jump_schedule, noise_tables
from .settings import LIMITS, Settings

__all__ = ["Inpainter"]

log = logging.getLogger(__name__)


def _is_preset(mask) -> bool:
    """A preset name (an unknown name, not a file either, is refused by masks.preset with the choices)."""
    return isinstance(mask, str) and (mask in masks.PRESETS or not Path(mask).is_file())


def _region(mask, keep_mask: bool, invert: bool) -> np.ndarray:
    """The region to fill of a mask image, array or file, at its own (upright) size: bool (H, W)."""
    if mask is None:
        raise ValueError("no mask given: draw the region to fill or pick a preset")
    if not isinstance(mask, (Image.Image, np.ndarray)):
        mask = images.open_image(mask)
    return masks.load_mask(mask, keep=keep_mask, invert=invert)


class Inpainter:
    """A loaded model: ``inpaint`` fills a masked image, ``compare`` also gives the n = 1 result."""

    #: The noisy-image classifier guiding the sampler (:meth:`attach_classifier`), ``classifier(x_t, t) -> logits``
    #: (B, classes) for training timesteps t; None: unguided.
    classifier: torch.nn.Module | None = None

    def __init__(self, unet: torch.nn.Module, scheduler_config: dict, name: str = "model"):
        self.unet = unet
        self.scheduler_config = dict(scheduler_config)
        self.name = name
        self.resolution = int(unet.config.sample_size)
        self.channels = int(unet.config.in_channels)
        self.train_steps = int(self.scheduler_config.get("num_train_timesteps", 1000))
        #: Classes of a class-conditional model (ImageNet ADM: 1000); 0 = unconditional.
        self.num_classes = int(unet.config.get("num_class_embeds") or 0)
        #: The model's second output half sets the step's variance (guided-diffusion's learn_sigma).
        self.learned_variance = self.scheduler_config.get("variance_type") == "learned_range"
        self._fingerprint: str | None = None

    def attach_classifier(self, classifier: torch.nn.Module) -> None:
        """Guide this model with ``classifier`` (:class:`repaint.classifier.NoisyClassifier`); its classes become the
        model's if the model itself is unconditional. Guided runs default to ``classifier_scale=1``."""
        self.classifier = classifier
        self._fingerprint = None  # the classifier's weights change what a guided run makes
        self.num_classes = self.num_classes or int(classifier.config.num_classes)

    def check_scale(self, classifier_scale) -> float:
        """The guidance scale of a run: given, or (None) 1 with a classifier (the paper's ImageNet setting) and 0
        without; a ValueError for a scale out of :data:`LIMITS` or one without a classifier."""
        if classifier_scale is None:
            return 0.0 if self.classifier is None else 1.0
        low, high = LIMITS["classifier_scale"]
        if (
            isinstance(classifier_scale, bool)
            or not isinstance(classifier_scale, (int, float, np.number))
            or not low <= classifier_scale <= high
        ):
            raise ValueError(f"classifier_scale must be a number from {low} to {high}, got {classifier_scale!r}")
        if classifier_scale and self.classifier is None:
            raise ValueError(f"model {self.name!r} has no classifier: leave classifier_scale at 0 (or load one)")
        return float(classifier_scale)

    def fingerprint(self) -> str:
        """SHA-256 of the weights as loaded (names, dtypes, shapes, bytes) and the scheduler config: what a model's
        name does not pin (a local folder can be retrained in place). Computed once."""
        if self._fingerprint is None:
            h = hashlib.sha256(json.dumps(self.scheduler_config, sort_keys=True, default=str).encode())
            guide = {} if self.classifier is None else self.classifier.state_dict()
            for name, t in [*self.unet.state_dict().items(), *(("classifier." + k, v) for k, v in guide.items())]:
                t = t.detach().to("cpu").contiguous()
                h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def eps(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The model's output for the sampler, in float32: the noise prediction (C channels), followed for a
        learned_range model by its variance interpolation v (C more); a learned half is otherwise ignored."""
        if self.unet.config.num_class_embeds is None:  # labels for the classifier only (an unconditional UNet)
            class_labels = None
        out = self.unet(x.to(self.dtype), t, class_labels=class_labels).sample
        return out[:, : self.channels * (2 if self.learned_variance else 1)].float()

    def probe_inputs(self, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs of a model call of ``rows`` rows (x_t, timesteps, class labels), to time the call or measure its
        memory: their values do not matter."""
        x = torch.zeros(rows, self.channels, self.resolution, self.resolution, device=self.device)
        t = torch.full((rows,), self.train_steps // 2, device=self.device, dtype=torch.long)
        labels = torch.zeros(rows, dtype=torch.long, device=self.device) if self.num_classes else None
        return x, t, labels

    def class_labels(self, seeds: Sequence[int], class_label: int | None = None) -> list[int] | None:
        """One class per sample: ``class_label`` for all, or (None) a random class drawn from each sample's seed,
        as the official test.py draws a random class per sample. None for an unconditional model."""
        if not self.num_classes:
            if class_label is not None:
                raise ValueError(f"model {self.name!r} is not class-conditional: leave class_label unset")
            return None
        if class_label is None:
            return [
                int(torch.randint(self.num_classes, (), generator=torch.Generator().manual_seed(int(s)))) for s in seeds
            ]
        if (
            isinstance(class_label, bool)
            or not isinstance(class_label, (int, np.integer))
            or not 0 <= class_label < self.num_classes
        ):
            raise ValueError(f"class_label must be an integer from 0 to {self.num_classes - 1}, got {class_label!r}")
        return [int(class_label)] * len(seeds)

    def prepare(self, image, mask, *, keep_mask: bool = False, invert: bool = False, seed: int = 0):
        """Fit an image and its mask to the model: (uint8 (R, R, 3), bool (R, R)), True = fill.

        ``mask``: a preset name (:data:`repaint.masks.PRESETS`, made at the model's resolution), or a mask
        image / array of the image's size (white or opaque = fill; ``keep_mask=True`` for white = keep). A preset
        always names the region to fill: ``keep_mask`` does not apply to it, ``invert`` does.
        """
        img = images.open_image(image)
        rgb = images.fit_image(img, self.resolution)
        if _is_preset(mask):
            m = self.preset_mask(mask, seed, invert=invert)  # keep_mask: mask files only
        else:
            m = images.fit_mask(_region(mask, keep_mask, invert), images.upright_size(img), self.resolution)
        return rgb, m

    def preset_mask(self, name: str, seed: int = 0, *, invert: bool = False) -> np.ndarray:
        """The preset ``name`` at the model's resolution, drawn from ``seed`` if random: bool (R, R), True = fill."""
        return masks.preset(name, self.resolution, self.resolution, seed) ^ invert

    def prepare_window(self, image, mask, *, keep_mask: bool = False, invert: bool = False, seed: int = 0):
        """Like :meth:`prepare`, for a result at the image's own size (:mod:`repaint.window`): returns
        (upright uint8 (H, W, 3), bool (H, W) fill mask, the window, uint8 (R, R, 3), bool (R, R)).

        A mask image gets a window around its mask. A preset is made on the model's grid over the centred square,
        as :meth:`prepare` makes it; its window is that square.
        """
        img = images.open_image(image)
        rgb = np.asarray(images.to_rgb(img, max_side=None))
        h, w = rgb.shape[:2]
        if _is_preset(mask):
            small_rgb, small = self.prepare(img, mask, keep_mask=keep_mask, invert=invert, seed=seed)
            win = window.centre_window(w, h)
            return rgb, window.spread(small, win, h, w), win, small_rgb, small
        region = _region(mask, keep_mask, invert)
        if region.shape != (h, w):
            raise ValueError(
                f"the mask is {region.shape[1]}x{region.shape[0]} but the image is {w}x{h}: they must match"
            )
        if not region.any():
            return rgb, region, window.centre_window(w, h), *self.prepare(img, region)
        win = window.mask_window(region, self.resolution)
        return (rgb, region, win, *window.model_input(rgb, region, win, self.resolution))

    def model_calls(self, steps: int = 250, jump_length: int = 10, jump_n_sample: int = 10) -> int:
        """Batched model calls of one run (a compare run makes the same number, with a larger batch)."""
        return Settings(steps=steps, jump_length=jump_length, jump_n_sample=jump_n_sample).calls

    def check(self, settings: Settings) -> Settings:
        """``settings`` checked for this model, with the guidance scale resolved (:meth:`check_scale`); a
        ValueError names the first setting out of bounds."""
        checked = settings.checked(self.train_steps)
        scale = self.check_scale(checked.classifier_scale)
        self.class_labels([checked.seed], checked.class_label)
        return checked.replace(classifier_scale=scale)

    @torch.inference_mode()
    def sample(
        self,
        images_u8: np.ndarray,
        fill: np.ndarray,
        schedules: list[list[int]],
        seeds: list[int],
        callback: Callback | None = None,
        class_labels: Sequence[int] | None = None,
        paste: bool = True,
        classifier_scale: float = 0.0,
        drive=None,
    ) -> np.ndarray:
        """The batched core: uint8 (B, R, R, 3) fitted images and bool (B, R, R) masks (or one of each, shared),
        one schedule and one seed per sample -> uint8 (B, R, R, 3), known pixels exact.

        ``class_labels``: one class per sample for a class-conditional model (default: :meth:`class_labels`).
        ``classifier_scale``: classifier guidance's scale (needs :attr:`classifier`); 0 runs unguided, the classifier
        never called.
        The sampler returns the known pixels exactly by itself; ``paste`` copies them from the input once more as a
        guarantee. ``paste=False`` returns the sampler's own pixels, to measure that claim.
        ``drive(chain, callback, guide) -> x_0``: what makes the model calls of the run's :class:`Chain`; None: this
        model alone (:func:`run_chain`), else e.g. a :class:`repaint.crowd.Crowd` of this model's runs (``drive``)."""
        dev = self.device
        steps = schedules[0][0] + 1
        gens = [torch.Generator(dev).manual_seed(s) for s in seeds]
        shape = (self.channels, self.resolution, self.resolution)
        x = torch.stack([torch.randn(shape, generator=g, device=dev) for g in gens])  # x_T, Algorithm 1 line 1
        images_u8, fill = np.asarray(images_u8), np.asarray(fill, dtype=bool)
        image = images.to_tensor(images_u8, dev)
        m = torch.from_numpy(fill).to(dev).reshape(-1, 1, *fill.shape[-2:])
        if class_labels is None:
            class_labels = self.class_labels(seeds)
        labels = None if class_labels is None else torch.tensor(list(class_labels), dtype=torch.long, device=dev)
        guide = None
        if self.check_scale(classifier_scale):
            guide = functools.partial(classifier_grad, self.classifier, scale=float(classifier_scale))
        tables = noise_tables(self.scheduler_config, steps)
        chain = Chain(x, image, m, tables, schedules, gens, class_labels=labels, guided=guide is not None)
        out = (drive or functools.partial(run_chain, self.eps))(chain, callback, guide)
        result = images.from_tensor(out)
        if not paste:
            return result
        keep = np.broadcast_to(~fill, result.shape[:3])
        result[keep] = np.broadcast_to(images_u8, result.shape)[keep]  # exact already (abar = 1 at the end)
        return result

    def run(
        self,
        image,
        mask,
        settings: Settings,
        *,
        callback: Callback | None = None,
        keep_mask: bool = False,
        invert: bool = False,
        full_size: bool = False,
        drive=None,
    ) -> list[list[Image.Image]]:
        """Inpaint with ``settings``: one list of ``num_samples`` images per chain of :attr:`Settings.chains` (the
        r chain, then in compare mode the r = 1 one, sampled in one batch). :meth:`inpaint` and :meth:`compare` in
        one typed value; the arguments are theirs, and ``drive`` :meth:`sample`'s."""
        s = self.check(settings)
        seeds = [s.seed + i for i in range(s.num_samples)]
        labels = self.class_labels(seeds, s.class_label)
        if full_size:
            big, big_mask, win, rgb, m = self.prepare_window(
                image, mask, keep_mask=keep_mask, invert=invert, seed=s.seed
            )
        else:
            rgb, m = self.prepare(image, mask, keep_mask=keep_mask, invert=invert, seed=s.seed)
        # A random preset: each sample draws its own mask from its own seed, as a run alone with that seed does.
        own = masks.is_random(mask)
        fills = [m] + [self.preset_mask(mask, seed, invert=invert) if own else m for seed in seeds[1:]]
        if not any(f.any() for f in fills):
            log.info("empty mask: nothing to fill, returning the input")
            return [[Image.fromarray(big if full_size else rgb) for _ in seeds] for _ in s.chains]
        if any(f.all() for f in fills):
            log.info("full mask: nothing is known, this is unconditional generation")
        chains = len(s.chains)
        out = self.sample(
            rgb,
            np.stack(fills * chains),
            [jump_schedule(s.steps, s.jump_length, r) for r in s.chains for _ in seeds],
            seeds * chains,
            callback,
            None if labels is None else labels * chains,
            classifier_scale=s.classifier_scale,
            drive=drive,
        )
        if full_size:
            big_masks = [big_mask] + [window.spread(f, win, *big.shape[:2]) if own else big_mask for f in fills[1:]]
            out = [window.paste_fill(big, bm, win, a) for a, bm in zip(out, big_masks * chains)]
        results = [[Image.fromarray(a) for a in out[k * len(seeds) : (k + 1) * len(seeds)]] for k in range(chains)]
        for row in results if labels is not None else []:
            for img, label in zip(row, labels):
                img.info["class_label"] = label  # which class each sample was drawn for
        return results

    def inpaint(
        self,
        image,
        mask,
        *,
        steps: int = 250,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        seed: int = 0,
        num_samples: int = 1,
        callback: Callback | None = None,
        keep_mask: bool = False,
        invert: bool = False,
        class_label: int | None = None,
        full_size: bool = False,
        classifier_scale: float | None = None,
    ) -> list[Image.Image]:
        """Fill the masked region (True / white = fill) with RePaint; sample ``i`` uses seed ``seed + i``.

        Returns ``num_samples`` RGB images at the model's resolution (the centred square); known pixels equal the
        fitted input exactly. ``full_size=True``: at the image's own size and orientation instead, filled through
        a square window around the mask (:mod:`repaint.window`); every pixel outside the mask is the input's.
        ``class_label``: a class-conditional model's class for all samples; unset, each sample draws a random
        class from its seed (``image.info["class_label"]`` says which).
        ``classifier_scale``: classifier guidance towards each sample's class (Dhariwal & Nichol 2021, as RePaint's
        ImageNet runs): unset, 1 for a model with a classifier (the paper's setting) and 0 without; 0 is unguided.
        """
        settings = Settings(
            steps=steps,
            jump_length=jump_length,
            jump_n_sample=jump_n_sample,
            num_samples=num_samples,
            seed=seed,
            compare=False,
            class_label=class_label,
            classifier_scale=classifier_scale,
        )
        options = dict(callback=callback, keep_mask=keep_mask, invert=invert, full_size=full_size)
        return self.run(image, mask, settings, **options)[0]

    def compare(
        self,
        image,
        mask,
        *,
        steps: int = 250,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        seed: int = 0,
        num_samples: int = 1,
        callback: Callback | None = None,
        keep_mask: bool = False,
        invert: bool = False,
        class_label: int | None = None,
        full_size: bool = False,
        classifier_scale: float | None = None,
    ) -> tuple[list[Image.Image], list[Image.Image]]:
        """``inpaint`` with ``jump_n_sample`` and with 1 from the same seeds, run together in one batch.

        Returns ``(resampled, plain)``: the same images as the two ``inpaint`` calls.
        """
        settings = Settings(
            steps=steps,
            jump_length=jump_length,
            jump_n_sample=jump_n_sample,
            num_samples=num_samples,
            seed=seed,
            compare=True,
            class_label=class_label,
            classifier_scale=classifier_scale,
        )
        options = dict(callback=callback, keep_mask=keep_mask, invert=invert, full_size=full_size)
        resampled, plain = self.run(image, mask, settings, **options)
        return resampled, plain
