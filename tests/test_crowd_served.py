"""A crowd on one server (issue 27): visitors' runs on /inpaint, through gradio_client, share the bundled model's
calls. Each run equals its run alone, a short run ends before a long one that started earlier, and a cancelled
run leaves without touching the others. Each visitor is a client of its own (one run per visitor)."""

from __future__ import annotations

import numpy as np
import pytest
from _tiny import assert_same_run
from conftest import served, wait_until
from gradio_client import Client, handle_file
from PIL import Image

import app
from repaint import Settings
from repaint.space.wire import Page

pytestmark = pytest.mark.usefixtures("service")  # each test its own Service: its crowds, runs and timing


def settings(steps, jump_length, jump_n_sample, seed=0, num_samples=1, compare=False) -> dict:
    return dict(
        model="bundled",
        steps=steps,
        jump_length=jump_length,
        jump_n_sample=jump_n_sample,
        seed=seed,
        num_samples=num_samples,
        compare=compare,
    )


def pictures(result) -> list[np.ndarray]:
    return [np.asarray(Image.open(r["image"] if isinstance(r, dict) else r[0]).convert("RGB")) for r in result]


def crowd_runs() -> int:
    """Runs in the bundled model's crowd now."""
    return app.SERVICE.runner.sharing("bundled")[0]


def test_concurrent_runs_with_their_own_settings_each_equal_their_run_alone(face):
    runs = [
        settings(20, 5, 3, seed=1),
        settings(12, 4, 2, seed=2, num_samples=2),
        settings(10, 5, 2, seed=3, compare=True),
    ]
    with served() as url:
        clients = [Client(url, verbose=False) for _ in runs]
        jobs = [c.submit(handle_file(str(face)), "left_half", api_name="/inpaint", **s) for c, s in zip(clients, runs)]
        together = [pictures(job.result(timeout=300)) for job in jobs]
        assert app.SERVICE.runner.crowd("bundled", app.SERVICE.cache.get_model("bundled")).calls < sum(
            Settings(**{k: v for k, v in s.items() if k != "model"}).calls for s in runs
        ), "the runs shared calls"
        alone = [
            pictures(clients[0].predict(handle_file(str(face)), "left_half", api_name="/inpaint", **s)) for s in runs
        ]
    for got, want in zip(together, alone):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same_run(a, b)


def test_a_short_run_ends_before_a_long_one_that_started_earlier(face):
    with served() as url:
        long_client, short_client = Client(url, verbose=False), Client(url, verbose=False)
        long_job = long_client.submit(handle_file(str(face)), "left_half", api_name="/inpaint", **settings(50, 5, 5))
        assert wait_until(lambda: crowd_runs() == 1, 60), "the long run did not start"
        short = short_client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", **settings(10, 5, 1))
        assert len(short) == 1 and not long_job.done(), "the short run ended first"
        assert len(long_job.result(timeout=300)) == 1


def test_a_cancelled_run_leaves_and_the_other_equals_its_run_alone(face):
    keep = settings(30, 5, 3, seed=4, num_samples=2)
    with served() as url:
        leaving, staying = Client(url, verbose=False), Client(url, verbose=False)
        gone = leaving.submit(handle_file(str(face)), "left_half", api_name="/inpaint", **settings(250, 10, 10))
        assert wait_until(lambda: crowd_runs() == 1, 60), "the run to cancel did not start"
        job = staying.submit(handle_file(str(face)), "left_half", api_name="/inpaint", **keep)
        assert wait_until(lambda: crowd_runs() == 2, 60), "the second run did not join"
        gone.cancel()
        assert wait_until(lambda: crowd_runs() <= 1, 30), "the cancelled run did not leave"
        got = pictures(job.result(timeout=300))
        alone = pictures(staying.predict(handle_file(str(face)), "left_half", api_name="/inpaint", **keep))
    for a, b in zip(got, alone, strict=True):
        assert_same_run(a, b)


def test_a_cancel_is_answered_within_a_call_or_so_whatever_the_preview_cadence(face, monkeypatch):
    """Gradio answers a client's cancel only once the handler has yielded: the run yields between its previews too
    (TICK_INTERVAL_S), so a cancel returns and the model stops long before the next preview. Here a paper-default
    run has one preview, at its last call: the cancel (which gradio_client gives 5 s) came before it."""
    monkeypatch.setattr("repaint.space.runner.ANIMATION_FRAMES", 1)
    with served() as url:
        job = Client(url, verbose=False).submit(
            handle_file(str(face)), "left_half", api_name="/inpaint", **settings(250, 10, 10)
        )
        crowd = app.SERVICE.runner.crowd("bundled", app.SERVICE.cache.get_model("bundled"))
        assert wait_until(lambda: crowd_runs() == 1 and crowd.calls > 10, 60), "the run did not start"
        job.cancel()  # raises httpx.ReadTimeout if the server has not answered within 5 s
        assert wait_until(lambda: crowd_runs() == 0, 30), "the cancelled run did not leave"
    assert crowd.calls < Settings(steps=250, jump_length=10, jump_n_sample=10).calls - 1, crowd.calls


def test_the_page_says_how_many_runs_share_the_model(face):
    """The estimate counts the runs sharing the model's calls, and says so."""
    alone = app.SERVICE.estimate_text("bundled", Settings(steps=50, jump_length=5, jump_n_sample=5))
    assert "share" not in alone
    with served() as url:
        clients = [Client(url, verbose=False) for _ in range(2)]
        jobs = [
            c.submit(handle_file(str(face)), "left_half", api_name="/inpaint", **settings(250, 10, 10)) for c in clients
        ]
        assert wait_until(lambda: crowd_runs() == 2, 60)
        text = app.SERVICE.estimate_text("bundled", Settings(steps=50, jump_length=5, jump_n_sample=5))
        for job in jobs:
            job.cancel()
    assert "2 other runs share the model now" in text, text
    per_call = [float(t.split(" ms per call")[0].rsplit("(", 1)[1]) for t in (alone, text)]
    assert per_call[1] > per_call[0], per_call  # each call also carries the others' rows


def progress_texts(messages) -> list[str]:
    """The texts of an event's progress messages, in order."""
    return [unit["desc"] for m in messages if m.get("msg") == "progress" for unit in m["progress_data"]]


def test_an_api_client_is_told_the_estimate_and_how_many_runs_share_the_model(face):
    """/inpaint's progress messages say what the page's status says: the estimate first, then the steps."""
    with served() as url:
        page = Page(url)
        alone = progress_texts(page.submit(*page.api_event("bundled", 10, 5, 1)))
        long_job = Client(url, verbose=False).submit(
            handle_file(str(face)), "left_half", api_name="/inpaint", **settings(250, 10, 10)
        )
        assert wait_until(lambda: crowd_runs() == 1, 60), "the long run did not start"
        shared = progress_texts(page.submit(*page.api_event("bundled", 10, 5, 1)))
        long_job.cancel()
    for texts in (alone, shared):  # Gradio sends the latest progress every 10 ms: one may replace the one before
        assert texts[0].startswith("Starting: 10 model calls, about "), texts
        assert all(t.startswith("Step ") for t in texts[1:]) and len(texts) > 1, texts
    assert not any("share" in t for t in alone), alone
    assert all("1 other run shares the model now" in t for t in shared), shared
