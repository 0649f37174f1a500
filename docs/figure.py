"""Writes docs/inpainting.png, the README's picture: a face of examples/ with three masks (rows), the masked input,
then the bundled model's fill with r=1 (Algorithm 1 alone) and with r=10 (resampling), T=50, j=5, seed 0.

    python docs/figure.py        # after pip install ., or with PYTHONPATH=.
"""

from pathlib import Path

import numpy as np
from PIL import Image

import repaint

HERE = Path(__file__).resolve().parent
pipe = repaint.load("bundled", device="cpu")
face = HERE.parent / "examples" / "face1.png"
rows = []
for mask in ("left_half", "every_second_line", "super_resolution_2x"):
    rgb, fill = pipe.prepare(str(face), mask)
    masked = np.where(fill[..., None], np.uint8(255), rgb)
    resampled, plain = pipe.compare(str(face), mask, steps=50, jump_length=5, jump_n_sample=10, seed=0)
    rows.append(np.concatenate([masked, np.asarray(plain[0]), np.asarray(resampled[0])], axis=1))
grid = Image.fromarray(np.concatenate(rows, axis=0))
grid.resize((grid.width * 4, grid.height * 4), Image.NEAREST).save(HERE / "inpainting.png")
