"""The estimate's benchmark command (``python -m repaint.space.bench``) runs a page run the way the page's handler
does and reports it; the figures themselves are the benchmark's, not asserted here."""

import numpy as np

from repaint import Settings
from repaint.space import bench


def test_a_page_run_is_timed_to_its_results(make_service):
    service = make_service()
    image = np.full((64, 48, 3), 128, np.uint8)
    mask = np.zeros((64, 48), bool)
    mask[20:40, 10:30] = True
    seconds = bench.page_run(service, "bundled", image, mask, Settings(steps=4, jump_length=2, jump_n_sample=2))
    assert seconds > 0


def test_the_table_has_a_row_per_run_and_the_ratio_on_the_servers_part():
    s = Settings(steps=20, jump_length=5, jump_n_sample=2)
    rows = [dict(round=1, run="small", settings=s, shown=4.5, server=3.0, wall=2.4)]
    table = bench.markdown(rows)
    assert "| 1 | small | 20, 5, 2 | 1 | no |" in table and "| 3.0 s | 2.4 s | 0.80 |" in table
    assert "median 0.80" in table
