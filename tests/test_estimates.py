"""The page's time estimate (issue 21): a batch's cost between the row counts timed, the whole wait (model calls,
the page run's own work, the browser's share), re-timed by each run, previews at a rate the page can show. The
estimate against the wait itself is a benchmark: ``python -m repaint.space.bench`` (docs/benchmarks.md)."""

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _page import left_half_editor, ui_request
from hypothesis import given
from hypothesis import strategies as st

import app
import repaint
from repaint import bench, space
from repaint.sampler import call_ticks

pytestmark = pytest.mark.usefixtures("service")


def test_batch_cost_is_the_assumed_line_without_timings():
    for per_row in (0.5, 1.0):
        assert [space.batch_cost({}, r, per_row) for r in (1, 2, 5)] == [1, 1 + per_row, 1 + 4 * per_row]


def test_batch_cost_goes_through_the_timed_points_and_straight_between_them():
    timed = {2: 2.0, 4: 3.2, 8: 6.0}
    assert space.batch_cost(timed, 1, 9.0) == 1.0
    assert [space.batch_cost(timed, r, 9.0) for r in (2, 4, 8)] == [2.0, 3.2, 6.0]
    assert space.batch_cost(timed, 3, 9.0) == pytest.approx(2.6)
    assert space.batch_cost(timed, 6, 9.0) == pytest.approx(4.6)
    assert space.batch_cost(timed, 10, 9.0) == pytest.approx(6.0 + 2 * 0.7)  # on along the last segment


@given(st.lists(st.floats(0.0, 3.0), min_size=3, max_size=3), st.integers(1, 16))
def test_batch_cost_grows_with_the_rows_when_the_timings_do(steps, rows):
    """Costs that grow with the rows give estimates that grow with the rows, between the neighbouring timings."""
    timed = dict(zip((2, 4, 8), np.cumsum(steps) + 1.0))
    here, more = space.batch_cost(timed, rows, 1.0), space.batch_cost(timed, rows + 1, 1.0)
    assert more >= here - 1e-9
    below = max([1] + [r for r in timed if r <= rows])
    above = min([r for r in timed if r >= rows], default=None)
    low = 1.0 if below == 1 else timed[below]
    assert here >= low - 1e-9 and (above is None or here <= timed[above] + 1e-9)


def test_the_wait_is_the_model_calls_the_page_runs_work_and_the_browsers_share(service):
    service.timing.call_s["bundled"], service.timing.timed_costs["bundled"] = 0.02, {2: 1.5, 4: 2.5, 8: 5.0}
    settings = repaint.Settings(steps=50, jump_length=5, jump_n_sample=5, num_samples=4)  # 230 calls of 4 rows
    calls = settings.calls
    assert service.timing.estimate_seconds("bundled", settings) == pytest.approx(calls * 0.02 * 2.5)
    assert service.timing.wait_seconds("bundled", settings) == pytest.approx(
        calls * 0.05 + space.EXTRA_S + space.PAGE_S
    )
    service.timing.note_page_run("bundled", 7.0, 4.5, 256 * 256)  # a page run of 7 s, 4.5 s of them model calls
    assert service.timing.wait_seconds("bundled", settings) == pytest.approx(calls * 0.05 + 2.5 + space.PAGE_S)
    # a phone photo's run is not learned from: the next estimate does not know its image's size
    service.timing.note_page_run("bundled", 30.0, 4.5, 4000 * 3000)
    assert service.timing.wait_seconds("bundled", settings) == pytest.approx(calls * 0.05 + 2.5 + space.PAGE_S)
    text = service.estimate_text("bundled", settings)
    assert "about **16 s** from click to result" in text and "12 s of model calls" in text
    assert "50.0 ms per call, timed at start-up" in text and "4 s for the page" in text


@given(st.integers(1, 60), st.integers(1, 12), st.integers(2, 10), st.integers(1, 4))
def test_a_comparison_costs_the_rows_the_sampler_batches_at_each_call(steps, jump, resample, samples):
    """The n=1 chains join the n=r ones only at the ticks they call the model (the sampler's own plan, call_ticks);
    the estimate is the sum of those calls' costs, not every call at twice the rows."""
    jump = min(jump, steps)
    service = space.Service()
    service.timing.call_s["m"], service.timing.timed_costs["m"] = 0.01, {2: 1.8, 4: 3.0, 8: 5.5}
    counts = [repaint.count_model_calls(steps, jump, resample), repaint.count_model_calls(steps, jump, 1)]
    want = sum(
        0.01 * space.batch_cost(service.timing.timed_costs["m"], samples * len(active), 1.0)
        for active in call_ticks(counts)
    )
    assert service.timing.estimate_seconds(
        "m", repaint.Settings(steps=steps, jump_length=jump, jump_n_sample=resample, num_samples=samples, compare=True)
    ) == pytest.approx(want)


def test_a_run_re_times_the_model_on_any_device(service):
    """On a CPU too (not only on ZeroGPU): a busy moment at start-up must not skew every later estimate. A run's
    measure is weighed by its calls against the start-up timing's PRIOR_CALLS; the row counts it did not use follow
    by the start-up timing's ratios."""
    service.timing.call_s["bundled"], service.timing.timed_costs["bundled"] = (
        0.5,
        {2: 2.0, 4: 3.0, 8: 6.0},
    )  # 1.5 s at 4 rows
    calls = repaint.count_model_calls(250, 10, 10)
    service.timing.note_run(
        "bundled", repaint.Settings(steps=250, jump_length=10, jump_n_sample=10, num_samples=4, seed=0), 0.06
    )  # 4 rows: 60 ms per call
    want = (1.5 * space.PRIOR_CALLS + 0.06 * calls) / (space.PRIOR_CALLS + calls)
    assert service.timing.call_seconds("bundled", 4) == pytest.approx(want)
    assert service.timing.call_seconds("bundled", 1) == pytest.approx(want / 3.0)
    assert service.timing.call_seconds("bundled", 8) == pytest.approx(want * 2.0)
    service.timing.note_run(
        "bundled", repaint.Settings(steps=250, jump_length=10, jump_n_sample=10, num_samples=4, seed=0), 0.06
    )
    assert service.timing.call_seconds("bundled", 4) < 0.06 * 1.5  # two long runs: within the 1.5x the page promises
    assert "measured by runs" in service.estimate_text(
        "bundled", repaint.Settings(steps=10, jump_length=5, jump_n_sample=2)
    )


def test_a_short_run_moves_the_estimate_less_than_a_long_one_and_the_load_now_counts_most(service):
    service.timing.call_s["bundled"], service.timing.timed_costs["bundled"] = 0.02, {}
    small = repaint.Settings(steps=20, jump_length=5, jump_n_sample=2)
    paper = repaint.Settings(steps=250, jump_length=10, jump_n_sample=10)
    service.timing.note_run("bundled", small, 0.04)  # 35 calls, slowed by the page's start: twice the start-up timing
    assert service.timing.call_seconds("bundled", 1) == pytest.approx(
        (0.02 * space.PRIOR_CALLS + 0.04 * 35) / (space.PRIOR_CALLS + 35)
    )
    service.timing.run_s.clear()
    service.timing.note_run("bundled", paper, 0.04)
    assert service.timing.call_seconds("bundled", 1) == pytest.approx(
        (0.02 * space.PRIOR_CALLS + 0.04 * 2410) / (space.PRIOR_CALLS + 2410)
    )
    for _ in range(10):
        service.timing.note_run("bundled", paper, 0.04)
    service.timing.note_run(
        "bundled", paper, 0.08
    )  # the machine got busy: one long run says so, however many came before
    assert service.timing.call_seconds("bundled", 1) == pytest.approx(
        (0.04 * space.RUN_CALLS_MAX + 0.08 * 2410) / (space.RUN_CALLS_MAX + 2410)
    )


def test_each_row_count_keeps_its_own_measure_and_the_others_are_interpolated():
    service = space.Service(on_zerogpu=True)  # a guess weighs nothing: each run's measure is taken as it is
    service.timing.call_s["m"], service.timing.timed_costs["m"] = 0.01, {2: 2.0, 4: 3.0, 8: 6.0}
    service.timing.note_run(
        "m", repaint.Settings(steps=20, jump_length=5, jump_n_sample=2, num_samples=1, seed=0), 0.012
    )  # 1 row: 1.2x the timing
    assert [service.timing.call_seconds("m", r) for r in (1, 2, 4, 8)] == pytest.approx([0.012, 0.024, 0.036, 0.072])
    service.timing.note_run(
        "m", repaint.Settings(steps=20, jump_length=5, jump_n_sample=2, num_samples=4, seed=0), 0.045
    )  # 4 rows: 1.5x
    assert service.timing.call_seconds("m", 1) == pytest.approx(0.012)
    assert service.timing.call_seconds("m", 4) == pytest.approx(0.045)
    assert service.timing.call_seconds("m", 2) == pytest.approx(0.02 * (1.2 + (1.5 - 1.2) / 3))  # a third of the way
    assert service.timing.call_seconds("m", 8) == pytest.approx(0.06 * 1.5)  # held beyond the last


@given(
    st.integers(1, 60), st.integers(1, 12), st.integers(1, 10), st.integers(1, 4), st.booleans(), st.floats(1e-4, 1.0)
)
def test_after_a_run_the_same_run_is_estimated_at_what_it_measured(steps, jump, resample, samples, compare, per_call):
    """The independent statement: with nothing known before (a ZeroGPU guess), a run's model time, however its
    calls are batched (a comparison's two row counts), is the estimate of the same run afterwards."""
    jump, resample = min(jump, steps), max(resample, 2) if compare else resample
    service = space.Service(on_zerogpu=True)
    service.timing.call_s["m"], service.timing.timed_costs["m"] = 0.03, {2: 1.8, 4: 3.0, 8: 5.5}
    settings = repaint.Settings(
        steps=steps, jump_length=jump, jump_n_sample=resample, num_samples=samples, compare=compare
    )
    service.timing.note_run("m", settings, per_call)
    assert service.timing.estimate_seconds("m", settings) == pytest.approx(per_call * settings.calls)


class TurnsFast:
    """A model whose calls take ``ms`` per batch row, three times as long for its first ``slow`` calls (a busy
    moment of the machine)."""

    channels, resolution, train_steps, num_classes, classifier = 3, 2, 1000, 0, None
    device = torch.device("cpu")

    def __init__(self, ms, slow):
        self.ms, self.slow, self.calls = ms, slow, 0

    def eps(self, x, t, labels):
        self.calls += 1
        time.sleep(self.ms / 1000 * len(x) * (3 if self.calls <= self.slow else 1))


@pytest.mark.slow
def test_batch_sizes_are_timed_in_turn_so_a_busy_moment_slows_them_alike():
    times = bench.call_times(TurnsFast(2, slow=12), (1, 4), repeats=10, warmup=0)
    assert times[4] / times[1] == pytest.approx(4.0, rel=0.2)
    apart = TurnsFast(2, slow=12)  # timed one after the other, the busy moment falls on one row only
    one = bench.call_time(apart, 1, repeats=10, warmup=0)
    assert bench.call_time(apart, 4, repeats=10, warmup=0) / one < 2
    budget = TurnsFast(20, slow=0)
    bench.call_times(budget, (1, 4), repeats=20, warmup=1, budget_s=0.05)
    assert budget.calls == 2 * (1 + 3)  # a warm-up round, then the three rounds at least


@given(st.integers(2, 3000), st.floats(1e-4, 1.0), st.floats(0, 100))
def test_the_per_call_time_of_evenly_spaced_calls_is_their_spacing(calls, spacing, start):
    times = start + spacing * np.arange(calls)
    assert space.call_interval(times) == pytest.approx(spacing, rel=1e-6)


def test_a_delay_at_a_runs_start_barely_moves_its_per_call_time():
    """A small page run: 35 calls 30 ms apart, the second 80 ms late (the page starting the run)."""
    times = 0.03 * np.arange(35) + 0.08 * (np.arange(35) >= 1)
    average = (times[-1] - times[0]) / 34
    assert average > 0.032 and 0.03 < space.call_interval(times) < 0.03 + (average - 0.03) / 5


class SlowStart:
    """A model whose run spends ``setup`` seconds before its first call, then ``per_call`` per call."""

    name, resolution, device = "slowstart", 32, SimpleNamespace(type="cpu")

    def __init__(self, setup, per_call, calls):
        self.setup, self.per_call, self.calls = setup, per_call, calls

    def run(self, image, mask, settings, callback, **options):
        time.sleep(self.setup)
        for tick in range(self.calls):
            time.sleep(self.per_call)
            x = torch.zeros(1, 3, 2, 2)
            callback(tick, [0.5], x, x)
        return [[np.zeros((2, 2, 3), np.uint8)]]


@pytest.mark.slow
def test_the_per_call_time_leaves_a_runs_set_up_out(make_service):
    """A run that prepares for 0.6 s and then makes 6 calls of 50 ms measures about 50 ms per call, not the
    (0.6 + 0.3) / 6 = 150 ms of its whole time: a short run would otherwise re-time the model far too slow."""
    service = make_service(offered=["slowstart", "bundled"])
    service.cache.models["slowstart"] = SlowStart(0.6, 0.05, 6)
    settings = repaint.Settings(steps=10, jump_length=5, jump_n_sample=2)
    *_, done = service.runner.run(space.Request(model="slowstart", settings=settings))
    assert isinstance(done, space.Done) and 0.045 <= done.per_call < 0.09, done


@pytest.mark.slow
def test_previews_come_at_most_every_interval(service, face, monkeypatch, one_thread):
    """A run of 230 calls (several seconds) sends its previews at most every PREVIEW_INTERVAL_S (2 per second), not
    at each of its 48 animation frames; the first comes at once."""
    start, sent = time.perf_counter(), []
    for out in app.run(
        left_half_editor(face), "left_half", "bundled", 50, 5, 5, 0, False, 1, False, False, ui_request("previews")
    ):
        if isinstance(out["preview"], np.ndarray):
            sent.append(time.perf_counter())
    seconds = time.perf_counter() - start
    assert seconds > 2 * space.PREVIEW_INTERVAL_S  # long enough to tell
    assert 2 <= len(sent) <= seconds / space.PREVIEW_INTERVAL_S + 1, (len(sent), seconds)
    assert all(b - a >= space.PREVIEW_INTERVAL_S * 0.9 for a, b in zip(sent, sent[1:]))


def test_a_page_run_notes_its_time_outside_the_model_calls(service, face, one_thread):
    assert "bundled" not in service.timing.extra_s
    list(
        app.run(
            left_half_editor(face), "left_half", "bundled", 10, 5, 2, 0, False, 1, False, False, ui_request("extra")
        )
    )
    assert 0 < service.timing.extra_s["bundled"] < 30
    assert "bundled" in service.timing.run_s


def test_the_page_shows_the_estimate_anew_on_each_visit_and_after_each_run():
    """The estimate is computed on page load and after a run (both re-timed by runs), not once at build time."""
    demo = app.build_demo()
    cfg = demo.get_config_file()
    estimate = next(c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "estimate")
    run_btn = next(c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "run")
    deps = [d for d in cfg["dependencies"] if estimate in d["outputs"]]
    triggers = {(t[0], t[1]) for d in deps for t in d["targets"]}
    assert any(event == "load" for _, event in triggers)
    by_id = {d["id"]: d for d in cfg["dependencies"]}
    after = [by_id[d["trigger_after"]] for d in deps if d.get("trigger_after") is not None]
    assert any((run_btn, "click") in {tuple(t) for t in d["targets"]} for d in after)
