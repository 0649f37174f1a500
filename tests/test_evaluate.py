import numpy as np

from repaint import evaluate, faces, masks


def _setup(name="left_half", n=3):
    imgs, labels = faces.make_faces(n, faces.EVAL_SEED, 32, return_labels=True)
    fills = np.stack([masks.preset(name, 32, 32)] * n)
    return imgs, labels, fills


def test_ground_truth_scores_zero():
    for name in ("left_half", "center_box", "every_second_line", "super_resolution_2x"):
        imgs, labels, fills = _setup(name)
        s = evaluate.scores(imgs, imgs, labels, fills)
        assert s["known_exact"] and s["error"] == 0 and s["colour"] == 0
        assert s["sym"] in (0, None)  # center_box and line masks are symmetric: no known mirror


def test_constant_offset_scores_that_offset():
    imgs, labels, fills = _setup()
    out = imgs.astype(np.int16)
    out[fills] = np.clip(out[fills] + 10, 0, 255)
    out = out.astype(np.uint8)
    s = evaluate.scores(out, imgs, labels, fills)
    saturated = (imgs[fills].astype(int) + 10 > 255).any()
    assert saturated or s["sym"] == s["error"] == 10.0


def test_known_pixel_change_is_reported():
    imgs, labels, fills = _setup()
    out = imgs.copy()
    out[0, 0, -1] ^= 1  # a known pixel (right half)
    assert not evaluate.scores(out, imgs, labels, fills)["known_exact"]


def test_markdown_table():
    rows = [dict(mask="left_half", method=m, r=None, error=e, sym=None, colour=None, known_exact=True)
            for m, e in (("repaint r=1", 10.0), ("chance (unconditional)", 80.0))]
    table = evaluate.markdown(rows)
    assert "| left_half | 10.0 | 80.0 |" in table and "preserved" in table
