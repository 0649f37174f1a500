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


def _offset(imgs, where, d=10):
    """Each selected channel value moved by exactly d (down where it would pass 255): |change| = d everywhere."""
    out = imgs.astype(np.int16)
    up = out <= 255 - d
    out[where] += np.where(up, d, -d)[where]
    return out.astype(np.uint8)


def test_constant_offset_scores_that_offset():
    """Closed form. The faces are exactly mirror-symmetric with flat regions, so a filling that is the truth moved by
    10 in every channel is 10 from its known mirror pixel (left half) and 10 from its region's colour."""
    imgs, labels, fills = _setup("left_half")
    s = evaluate.scores(_offset(imgs, fills), imgs, labels, fills)
    assert s["sym"] == s["error"] == s["colour"] == 10.0 and s["known_exact"]
    # Moved in the top half of the rows only: half the filled pixels are 10 off, the other half exact.
    top = fills & (np.arange(32)[None, :, None] < 16)
    s = evaluate.scores(_offset(imgs, top), imgs, labels, fills)
    assert s["sym"] == s["error"] == 5.0


def test_symmetric_mask_scores_by_region_colour():
    """A centred box is its own mirror image: no filled pixel has a known mirror, so only region colours judge it.
    Background, skin and hair pixels filled with the truth + 10 are 10 from their region's colour."""
    imgs, labels, fills = _setup("center_box")
    s = evaluate.scores(_offset(imgs, fills), imgs, labels, fills)
    assert s["sym"] is None and s["colour"] == s["error"] == 10.0


def test_known_pixel_change_is_reported():
    imgs, labels, fills = _setup()
    out = imgs.copy()
    out[0, 0, -1] ^= 1  # a known pixel (right half)
    assert not evaluate.scores(out, imgs, labels, fills)["known_exact"]


def test_markdown_table():
    rows = [
        dict(mask="left_half", method=m, r=None, error=e, sym=None, colour=None, known_exact=True)
        for m, e in (("repaint r=1", 10.0), ("chance (unconditional)", 80.0))
    ]
    table = evaluate.markdown(rows)
    assert "| left_half | 10.0 | 80.0 |" in table and "preserved" in table
