"""The app under test always starts on the bundled model, whatever GPU or Hub access the machine has."""

import os

import pytest


def pytest_configure(config):
    os.environ.setdefault("REPAINT_MODEL", "bundled")


@pytest.fixture
def service(monkeypatch):
    """The app with a Service of the test's own (its runs, Stop flags and workers), sharing the loaded bundled
    model: for the modules that drive the app (``pytestmark = pytest.mark.usefixtures("service")``)."""
    import app
    from repaint import serving

    svc = serving.Service()
    svc.models["bundled"], svc.call_s["bundled"] = app.SERVICE.get_model("bundled"), app.SERVICE.call_s["bundled"]
    monkeypatch.setattr(app, "SERVICE", svc)
    return svc
