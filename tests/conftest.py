"""The app under test always starts on the bundled model, whatever GPU or Hub access the machine has."""

import os


def pytest_configure(config):
    os.environ.setdefault("REPAINT_MODEL", "bundled")
