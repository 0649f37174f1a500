"""The crowd (repaint/crowd.py): runs of one model sharing each model call. Each run's result is its run alone's (up
to a batched convolution's rounding, _tiny.assert_same_run), a run joins at the next call and a short run ends
before a long one that started earlier, a stopped run leaves alone, and no run starves when the rows do not fit."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from _adm import classifier_folder, save_checkpoint, tiny_classifier
from _tiny import assert_same_run, tiny_pipe
from hypothesis import given, settings
from hypothesis import strategies as st

import repaint
from repaint import convert
from repaint.crowd import MEMORY_SHARE, Crowd, rows_for_memory, sized_rows
from repaint.memory import free_bytes
from repaint.settings import Settings, count_model_calls

IMAGE = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe()


def outputs(results) -> list[np.ndarray]:
    return [np.asarray(img) for chain in results for img in chain]


def together(pipe, crowd: Crowd, runs: list[Settings], mask="center_box", **kw) -> list:
    """Each of ``runs`` in a thread of its own, all driven by ``crowd``: their results, in order."""
    got, errors = [None] * len(runs), []

    def one(i):
        try:
            got[i] = pipe.run(IMAGE, mask, runs[i], drive=crowd.drive, **kw)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(runs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return got


run_settings = st.builds(
    Settings,
    steps=st.integers(2, 12),
    jump_length=st.integers(1, 4),
    jump_n_sample=st.integers(1, 3),
    seed=st.integers(0, 1000),
    num_samples=st.integers(1, 3),
    compare=st.booleans(),
).filter(lambda s: s.jump_length <= s.steps and (not s.compare or s.jump_n_sample > 1))


@settings(max_examples=10, deadline=None)
@given(runs=st.lists(run_settings, min_size=2, max_size=3), rows_max=st.integers(1, 12))
def test_runs_sharing_the_calls_each_give_their_run_alones_result(pipe, runs, rows_max):
    crowd = Crowd(pipe.eps, rows_max=rows_max)
    for s, got in zip(runs, together(pipe, crowd, runs)):
        alone = pipe.run(IMAGE, "center_box", s)
        for a, b in zip(outputs(got), outputs(alone)):
            assert_same_run(a, b)
    rows = sum(s.num_samples * count_model_calls(s.steps, s.jump_length, r) for s in runs for r in s.chains)
    assert crowd.rows == rows and len(crowd) == 0  # every row of every run, each once


def test_the_calls_are_shared(pipe):
    """Three runs of the same length in one crowd take one call per tick, not three."""
    crowd = Crowd(pipe.eps, rows_max=16)
    runs = [Settings(steps=10, jump_length=2, jump_n_sample=2, seed=i) for i in range(3)]
    release = threading.Event()

    def gate(*_):  # the first run waits at its first call until the others have joined
        release.wait(30)

    first = threading.Thread(target=pipe.run, args=(IMAGE, "center_box", runs[0]), kwargs=dict(drive=crowd.drive))
    first.start()
    got = []
    others = [
        threading.Thread(
            target=lambda s=s: got.append(pipe.run(IMAGE, "center_box", s, drive=crowd.drive, callback=gate))
        )
        for s in runs[1:]
    ]
    for t in others:
        t.start()
    while len(crowd) < 3 and first.is_alive():
        threading.Event().wait(0.01)
    release.set()
    for t in [first, *others]:
        t.join()
    calls = runs[0].calls
    assert crowd.calls < 2 * calls and crowd.rows == 3 * calls  # most calls served all three


def test_a_short_run_ends_before_a_long_one_that_started_earlier(pipe):
    crowd = Crowd(pipe.eps)
    long_run = Settings(steps=60, jump_length=5, jump_n_sample=5, seed=1)
    ended = []
    started = threading.Event()

    def note_start(tick, *_):
        started.set()

    def long():
        pipe.run(IMAGE, "center_box", long_run, drive=crowd.drive, callback=note_start)
        ended.append("long")

    t = threading.Thread(target=long)
    t.start()
    assert started.wait(30)
    pipe.run(IMAGE, "center_box", Settings(steps=5, jump_length=1, jump_n_sample=1), drive=crowd.drive)
    ended.append("short")
    t.join()
    assert ended == ["short", "long"]


def test_a_stopped_run_leaves_and_the_others_are_untouched(pipe):
    crowd = Crowd(pipe.eps)
    keep = Settings(steps=20, jump_length=2, jump_n_sample=3, seed=5, num_samples=2)
    stop = threading.Event()
    calls_after_stop = []

    def stopping(tick, *_):
        if stop.is_set():
            calls_after_stop.append(tick)
        if tick == 3:
            stop.set()

    errors = []

    def stopped_run():
        try:
            pipe.run(
                IMAGE,
                "center_box",
                Settings(steps=20, jump_length=2, jump_n_sample=3),
                drive=_with_stop(crowd, stop),
                callback=stopping,
            )
        except InterruptedError as e:
            errors.append(e)

    t = threading.Thread(target=stopped_run)
    t.start()
    got = pipe.run(IMAGE, "center_box", keep, drive=crowd.drive)
    t.join()
    assert errors and calls_after_stop == [], "the stopped run left before its next call"
    for a, b in zip(outputs(got), outputs(pipe.run(IMAGE, "center_box", keep))):
        assert_same_run(a, b)


def _with_stop(crowd: Crowd, stop: threading.Event):
    return lambda chain, callback, guide: crowd.drive(chain, callback, guide, stopped=stop.is_set)


def test_no_run_starves_when_the_rows_do_not_fit(pipe):
    """Three runs of 2 rows, calls of at most 2 rows: the calls take the runs in turn (oldest-first)."""
    crowd = Crowd(pipe.eps, rows_max=2)
    order, lock = [], threading.Lock()

    def note(i):
        def callback(*_):
            with lock:
                order.append(i)

        return callback

    runs = [Settings(steps=6, jump_length=2, jump_n_sample=2, seed=i, num_samples=2) for i in range(3)]
    threads = [
        threading.Thread(
            target=pipe.run, args=(IMAGE, "center_box", s), kwargs=dict(drive=crowd.drive, callback=note(i))
        )
        for i, s in enumerate(runs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert crowd.rows == 2 * crowd.calls  # each call a run's two rows
    everyone = [i for i in order if order.count(i) == runs[0].calls]
    assert len(set(everyone)) == 3
    middle = order[2 : len(order) - 2]  # once all three have joined and until one ends
    for k in range(len(middle) - 2):
        window = middle[k : k + 3]
        assert len(set(window)) == 3 or len(set(order)) < 3, order


def test_a_models_failure_ends_the_runs_in_that_call_and_the_crowd_goes_on(pipe):
    fail = threading.Event()

    def model(x, t):
        if fail.is_set():
            fail.clear()
            raise RuntimeError("out of memory")
        return pipe.eps(x, t)

    crowd = Crowd(model)
    fail.set()
    with pytest.raises(RuntimeError, match="out of memory"):
        pipe.run(IMAGE, "center_box", Settings(steps=4, jump_length=2, jump_n_sample=1), drive=crowd.drive)
    s = Settings(steps=4, jump_length=2, jump_n_sample=1)
    assert_same_run(
        outputs(pipe.run(IMAGE, "center_box", s, drive=crowd.drive))[0], outputs(pipe.run(IMAGE, "center_box", s))[0]
    )


def test_guided_and_class_conditional_runs_share_the_calls(tmp_path):
    """Runs of a class-conditional model guided by a classifier, at their own classes and scales (one unguided),
    each give their run alone's result."""
    ckpt, _, o = save_checkpoint(tmp_path / "tiny.pt", class_cond=True)
    folder = repaint.convert_adm(ckpt, tmp_path / "unet", **{k: v for k, v in o.items() if v != convert.DEFAULTS[k]})
    cls = classifier_folder(tmp_path, tiny_classifier(head_channels=64).requires_grad_(False))
    guided = repaint.load(folder, device="cpu", classifier=cls)
    crowd = Crowd(guided.eps)
    runs = [
        Settings(steps=8, jump_length=2, jump_n_sample=2, seed=1, class_label=3, classifier_scale=2.0),
        Settings(steps=6, jump_length=2, jump_n_sample=2, seed=2, class_label=7, classifier_scale=0.0, compare=True),
        Settings(steps=8, jump_length=4, jump_n_sample=1, seed=3, class_label=1, classifier_scale=1.0, num_samples=2),
    ]
    for s, got in zip(runs, together(guided, crowd, runs)):
        for a, b in zip(outputs(got), outputs(guided.run(IMAGE, "center_box", s))):
            assert_same_run(a, b)


def test_a_model_the_cache_let_go_is_freed_with_its_crowd():
    """The runner keeps a crowd per model; once the cache drops the model (a Hub id past its bound), the next run's
    crowd lookup lets the old one go, and with it the model."""
    import gc
    import weakref

    from repaint import space

    cache = space.ModelCache(space.Timing(), offered=["bundled"])
    runner = space.Runner(cache)
    old, new = tiny_pipe(), tiny_pipe()
    cache.models["owner/old"], cache.models["owner/new"] = old, new
    runner.crowd("owner/old", old)  # a crowd made for it, as a run makes one
    gone = weakref.ref(old)
    del cache.models["owner/old"], old
    runner.crowd("owner/new", new)
    gc.collect()
    assert gone() is None


MB = 2**20


@given(
    fixed=st.integers(0, 2**34),
    per_row=st.integers(1, 2**32),
    free=st.integers(0, 2**37),
    cap=st.integers(1, 64),
    share=st.floats(0.05, 1.0),
)
def test_the_rows_per_call_are_the_most_that_fit_the_memory(fixed, per_row, free, cap, share):
    rows = rows_for_memory(fixed, per_row, free, cap, share)
    assert 1 <= rows <= cap
    assert rows == 1 or fixed + rows * per_row <= free * share, "it fits"
    assert rows == cap or fixed + (rows + 1) * per_row > free * share, "one row more would not"
    assert rows_for_memory(fixed, per_row, None, cap, share) == cap, "memory unknown: the cap"


def test_the_rows_per_call_come_from_the_memory_a_call_takes():
    """A "model" whose call of n rows holds 48 MB and n x 64 MB at once: the rows measured from its peaks are the
    rows those known sizes give for the machine's free memory."""

    def model(x, t):
        held = torch.ones(48 * MB // 4), torch.ones(len(x) * 64 * MB // 4)
        return sum(float(h[-1]) for h in held)

    def inputs(rows):
        return torch.zeros(rows), torch.zeros(rows), None

    cpu = torch.device("cpu")
    got = sized_rows(model, inputs, cpu, cap=10**6)
    want = rows_for_memory(48 * MB, 64 * MB, free_bytes(cpu), cap=10**6)
    assert abs(got - want) <= max(2, 0.05 * want), (got, want)
    assert sized_rows(model, inputs, cpu, cap=3) == 3, "at most the cap"
    small = int(free_bytes(cpu) * MEMORY_SHARE // (64 * MB)) // 8  # memory for about an eighth of the rows that fit
    assert 1 <= sized_rows(model, lambda rows: inputs(rows * 8), cpu, cap=10**6) <= small + 2


def test_a_loaded_models_crowd_gets_the_rows_its_memory_allows():
    """The cache sizes a model's rows per call at load (two calls measured, at most ``Limits.crowd_rows``), and the
    runner's crowd of that model takes them; this machine's memory holds more than 16 rows of the bundled model."""
    from repaint import space
    from repaint.space.limits import Limits

    cache = space.ModelCache(space.Timing(), offered=["bundled"], limits=Limits(crowd_rows=5))
    inp = cache.get_model("bundled")
    assert cache.crowd_rows["bundled"] == 5
    assert sized_rows(inp.eps, inp.probe_inputs, inp.device, cap=16) == 16
    cache.crowd_rows["bundled"] = 3  # as a model whose rows take more memory would be sized
    assert space.Runner(cache).crowd("bundled", inp).rows_max == 3
