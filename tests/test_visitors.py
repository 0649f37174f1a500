"""One run per visitor (issue 30): a visitor with a run running or waiting is refused a second one before it queues,
with a message that says why; the page's run and /inpaint never run side by side for one session. Over Gradio's wire
protocol (tests/_wire.py) and gradio_client, against a served page."""

import threading
import time

import httpx
import pytest
from conftest import served
from gradio_client import Client, handle_file
from gradio_client.exceptions import ValidationError

import app
from repaint.space import visitors
from repaint.space.wire import FACE, Page

pytestmark = pytest.mark.usefixtures("service")
LONG = ("bundled", 250, 10, 10)  # 2,410 model calls: running for the whole test, then stopped
API = dict(model="bundled", steps=10, jump_length=5, jump_n_sample=2, seed=0, num_samples=1, compare=False)


@pytest.fixture
def url():
    with served() as url:
        yield url


def refusal(page: Page, fn_index: int, data: list) -> httpx.Response:
    body = dict(data=data, fn_index=fn_index, trigger_id=None, session_hash=page.session, event_data=None)
    return httpx.post(page.url + "/queue/join", json=body)


def running(page: Page) -> threading.Thread:
    """The visitor's long page run, joined and read (in a thread) until it has started; stopped when the test ends
    (the served page closes)."""
    page.join(*page.inpaint_event(*LONG))
    started, stream = threading.Event(), page.messages()

    def read():
        for m in stream:
            if m.get("msg") == "progress":
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(60), "the first run did not start"
    return reader


def test_a_visitor_with_a_run_is_refused_a_second_one_on_the_page_and_on_inpaint(url):
    page = Page(url)
    running(page)
    again = refusal(page, *page.inpaint_event(*LONG))  # Inpaint clicked again
    assert again.status_code == 400 and again.json()["detail"] == visitors.BUSY
    api = refusal(page, *page.api_event("bundled", 10, 5, 2))  # /inpaint from the same session
    assert api.status_code == 422 and api.json()["detail"][0]["message"] == visitors.BUSY
    other = Page(url)  # another visitor queues behind it
    assert refusal(other, *other.inpaint_event("bundled", 10, 5, 2)).status_code == 200
    app.SERVICE.runner.stop(page.session)


def test_inpaint_callers_are_one_visitor_per_address_as_the_proxy_reports_it(url):
    """Two gradio_client sessions behind one address: the second is refused while the first waits or runs; a caller
    from another address, and the first one's next request, are served."""
    first = Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    job = first.submit(handle_file(str(FACE)), "left_half", api_name="/inpaint", **{**API, "steps": 250})
    same = Client(url, verbose=False, headers={"X-Forwarded-For": "203.0.113.7"})
    while job.status().code.name not in ("PROCESSING", "ITERATING"):  # it is running
        assert not job.done(), job.result()
        time.sleep(0.05)
    with pytest.raises(ValidationError, match="already have a run in progress or waiting"):
        same.predict(handle_file(str(FACE)), "left_half", api_name="/inpaint", **API)
    other = Client(url, verbose=False, headers={"X-Forwarded-For": "203.0.113.8"})
    job.cancel()
    assert len(other.predict(handle_file(str(FACE)), "left_half", api_name="/inpaint", **API)) == 1
    assert len(same.predict(handle_file(str(FACE)), "left_half", api_name="/inpaint", **API)) == 1


@pytest.mark.parametrize(
    ("headers", "client", "seen"),
    [
        ({"x-forwarded-for": "198.51.100.1, 203.0.113.7"}, "10.0.0.2", "203.0.113.7"),
        ({}, "203.0.113.9", "203.0.113.9"),
        ({}, "127.0.0.1", None),  # the owner's own scripts
        ({"x-forwarded-for": "::1"}, "10.0.0.2", None),
    ],
)
def test_the_callers_address_is_the_one_the_nearest_proxy_reports(headers, client, seen):
    request = type("Request", (), {"headers": headers, "client": type("Client", (), {"host": client})()})()
    assert visitors.address(request) == seen
