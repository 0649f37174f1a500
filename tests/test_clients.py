"""Runs whose client is gone (issue 30): a run stops at its next model call once its client is gone (a stream never
opened, a stream dropped), on the page and on ``/inpaint``; a run whose client left while it queued does not start.
Spoken over Gradio's wire protocol (tests/_wire.py), as a script would; the bundled model's calls are counted."""

import logging
import threading

import pytest
from conftest import served, wait_until

import app
from repaint.space import clients
from repaint.space.wire import Page

pytestmark = pytest.mark.usefixtures("service")
PAPER = ("bundled", 250, 10, 10)  # 2,410 model calls: about a minute of this CPU, were it not stopped


class Calls(logging.Handler):
    """The bundled model's calls, counted; at each "client gone" of repaint.space.clients, the count then."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.n, self.at_notice, self.said, self.noticed = 0, None, "", threading.Event()

    def emit(self, record):
        if record.getMessage().startswith("client gone") and not self.noticed.is_set():
            self.at_notice, self.said = self.n, record.getMessage()
            self.noticed.set()


@pytest.fixture
def calls(monkeypatch):
    """Counts the model's calls; the clients' grace shortened to 1 s (5 s on a server)."""
    monkeypatch.setattr(clients.READERS, "grace_s", 1.0)
    counter, logger = Calls(), logging.getLogger(clients.__name__)
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(counter)
    hook = app.SERVICE.cache.get_model("bundled").unet.register_forward_pre_hook(
        lambda *_: setattr(counter, "n", counter.n + 1)
    )
    yield counter
    hook.remove()
    logger.removeHandler(counter)


def idle() -> bool:
    """No run in flight: no Stop flag held, no worker thread alive."""
    return not app.SERVICE.runner.stop_flags and not app.SERVICE.runner.running()


def assert_stopped_at_the_next_call(calls: Calls, total: int) -> None:
    assert calls.noticed.wait(60), "the client's leaving was never noticed"
    assert wait_until(idle, 60), "the run did not end"
    assert calls.n - calls.at_notice <= 1, (calls.at_notice, calls.n)  # the call under way at most
    assert 0 < calls.n < total, calls.n


@pytest.mark.parametrize("event", ["inpaint_event", "api_event"])
def test_a_run_whose_stream_is_never_opened_stops_at_its_next_model_call(calls, event):
    """A script joins the queue (the page's Inpaint, or /inpaint) and never opens its stream: Gradio never notices,
    and the run used to compute to its end."""
    with served() as url:
        page = Page(url)
        page.join(*getattr(page, event)(*PAPER))
        assert_stopped_at_the_next_call(calls, 2410)
    assert "read nothing" in calls.said, calls.said


def test_a_run_whose_stream_is_dropped_stops_at_its_next_model_call(calls):
    """The page is closed mid-run: the stream is dropped after the first progress message."""
    with served() as url:
        page = Page(url)
        page.join(*page.inpaint_event(*PAPER))
        stream = page.messages()
        next(m for m in stream if m.get("msg") == "progress")  # after a model call: mid-run
        stream.close()
        # Gradio may notice the dropped stream first and close the run (it then stops at its next call too, through
        # the runner), or this module does: either way the run ends mid-way
        assert wait_until(lambda: calls.noticed.is_set() or idle(), 60), "the run went on"
        if calls.noticed.is_set():
            assert_stopped_at_the_next_call(calls, 2410)
        assert wait_until(idle, 60) and 0 < calls.n < 2410, calls.n


def test_a_run_whose_client_left_while_it_queued_does_not_start_and_a_reading_one_runs_to_its_end(calls, monkeypatch):
    """Visitor A's run (read to its end) holds the only worker (a server that takes one run at a time); B joins
    behind it and never reads. When A's run ends, B's leaves the queue and is not run: no model call after A's."""
    monkeypatch.setattr(app, "CONCURRENCY", 1)  # the page's queue takes one run at a time
    with served() as url:
        first, second = Page(url), Page(url)
        first.join(*first.inpaint_event("bundled", 50, 10, 5))  # 210 calls
        stream = first.messages()
        next(m for m in stream if m.get("msg") == "progress")  # A's run has started
        second.join(*second.inpaint_event(*PAPER))
        *_, last = stream
        assert last["success"] and last["output"]["data"][0].startswith("Done"), last
        after_first = calls.n
        assert calls.noticed.wait(60), "B's client was never found gone"
        assert wait_until(idle, 60), "B's run did not end"
    assert "before its run started" in calls.said and calls.n == after_first == 210, (calls.said, calls.n)
