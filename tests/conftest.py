"""The suite pins its own environment, so a developer's shell can neither change results nor reach the network.

This runs when pytest imports the conftest, before any test module imports ``app``, ``tqdm``, ``huggingface_hub``
or ``gradio``, each of which reads some of these variables once, at import time:
- ``app``: ``REPAINT_ALLOW_HUB_IDS`` (at import), ``REPAINT_MODEL`` (when picking the default model); the app
  under test always starts on the bundled model, whatever GPU or Hub access the machine has;
- ``tqdm``: every ``TQDM_*`` variable overrides its defaults (``TQDM_DISABLE=1`` hides the CLI's progress);
- ``huggingface_hub``: ``HF_HUB_OFFLINE`` and its cache folders; offline with an empty cache here, so no test
  downloads and none finds a model the developer happens to have cached;
- ``gradio``: ``GRADIO_*`` (server name, port, analytics, which would call home); its temporary folder is private;
- ``spaces``: ``SPACES_ZERO_GPU`` would make the app believe it runs on ZeroGPU.
Tests that exercise one of these set it themselves (monkeypatch, or a subprocess's own environment).
"""

import atexit
import contextlib
import os
import shutil
import tempfile
import time

import pytest

PINNED = {
    "REPAINT_MODEL": "bundled",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}
DROPPED_PREFIXES = ("REPAINT_", "TQDM_", "HF_", "HUGGINGFACE_", "GRADIO_", "SPACES_")


def _private_dir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def pin_environment(environ=os.environ) -> None:
    for name in [k for k in environ if k.startswith(DROPPED_PREFIXES)]:
        del environ[name]
    environ.update(PINNED)
    environ["HF_HOME"] = _private_dir("repaint-tests-hf-")  # an empty cache
    # Gradio's uploads and cached examples: by default /tmp/gradio, shared with every Gradio process on the machine
    # (a concurrent run's cleanup once deleted this run's cached example mid-test).
    environ["GRADIO_TEMP_DIR"] = _private_dir("repaint-tests-gradio-")


pin_environment()


@pytest.fixture
def make_service(monkeypatch):
    """``make_service(**kwargs)``: the app with a ``space.Service(**kwargs)`` of the test's own (its runs, Stop
    flags and workers), sharing the loaded bundled model."""
    import app
    from repaint import space

    def make(**kwargs):
        svc = space.Service(**kwargs)
        svc.cache.models["bundled"], svc.timing.call_s["bundled"] = (
            app.SERVICE.cache.get_model("bundled"),
            app.SERVICE.timing.call_s["bundled"],
        )
        monkeypatch.setattr(app, "SERVICE", svc)
        return svc

    return make


@pytest.fixture
def service(make_service):
    """The app with a Service of the test's own: for the modules that drive the app
    (``pytestmark = pytest.mark.usefixtures("service")``)."""
    return make_service()


@pytest.fixture
def one_thread():
    """torch on one thread for the test: a tiny model gains nothing from a second one, and on a machine shared with
    other jobs two threads were measured 15x slower than one (the bundled model, 2 cores, load 9)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def served(max_size: int | None = None, demo=None):
    """The app's page of its own (built now, from ``app.SERVICE`` as it is, unless ``demo`` is given) on a port Gradio
    picks (it retries a taken one), with the app's launch settings (its queue holding ``max_size`` waiting requests,
    if given, else the app's QUEUE_MAX): yields its URL, closes it after."""
    import app

    assert demo is None or max_size is None, "a demo of the test's own has its own queue"
    demo = demo or app.build_demo(**({} if max_size is None else {"queue_max": max_size}))
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client():
    """A gradio_client on a page of its own (:func:`served`)."""
    from gradio_client import Client

    with served() as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    """examples/face1.png, copied to a file of the test module's own."""
    from PIL import Image

    import app

    path = tmp_path_factory.mktemp("in") / "face.png"
    Image.open(app.EXAMPLES_DIR / "face1.png").save(path)
    return path


@pytest.fixture
def file_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 (a model host stand-in: downloads go through the real loading code):
    (www, url, the paths asked for, the server; a test may shut it down early, to prove it works offline)."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    asked = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}", asked, httpd
    finally:
        httpd.shutdown()  # returns at once when the test shut it down already
        httpd.server_close()


@pytest.fixture
def hub(monkeypatch):
    """A loopback Hub (tests/_hub.py: uploads, and downloads of what its ``repos`` hold) that ``huggingface_hub``
    talks to, online, for this test: ``hub.repos[repo_id][path] = bytes``, ``hub.requests``."""
    from _hub import LoopbackHub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite pins offline mode; this server is local
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with LoopbackHub() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)  # what HF_ENDPOINT sets, read at import
        template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)  # hf_hub_download's, read at import
        yield server


@pytest.fixture(scope="module")
def pipe():
    """The tiny random-weight model (tests/_tiny.py), one per test module."""
    from _tiny import tiny_pipe

    return tiny_pipe()


@pytest.fixture(scope="module")
def bundled():
    """The bundled model on the CPU, one per test module."""
    import repaint

    return repaint.load("bundled", device="cpu")


# --- the browser tests' fixtures (tests/_browser.py has their helpers) ----------------------------------------------
@pytest.fixture(scope="module")
def url():
    with served() as page_url:
        yield page_url


@pytest.fixture(scope="module")
def browser(url):
    import _browser

    sync_api = pytest.importorskip("playwright.sync_api")
    _browser.ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(_browser.CHROMIUM), args=_browser.ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def orange(tmp_path):
    """A flat 300x200 image: any blue on the canvas is the layer's."""
    from _browser import ORANGE
    from PIL import Image

    path = tmp_path / "orange.png"
    Image.new("RGB", (300, 200), ORANGE).save(path)
    return path


def wait_until(cond, timeout: float, every: float = 0.05) -> bool:
    """Whether ``cond()`` came true within ``timeout`` seconds (looked at every ``every``): a state the server
    reaches, waited for with a bound only for failing."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return cond()
