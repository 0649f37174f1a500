"""The page's wire protocol, as the browser speaks it: its events by fn_index through Gradio's queue over HTTP, one
session, with nothing of Gradio's client, so that a script can join the queue and never read, or read and drop (the
tests and :mod:`.hostile` speak it to a served page)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

FACE = Path(__file__).resolve().parents[2] / "examples" / "face1.png"  # the page's first example


class Page:
    """The page as the browser drives it: its events by fn_index through Gradio's queue, one session."""

    def __init__(self, url: str):
        self.url, self.session = url.rstrip("/") + "/gradio_api", uuid.uuid4().hex
        self.config = httpx.get(url.rstrip("/") + "/config").json()
        self.ids = {c["props"].get("elem_id"): c["id"] for c in self.config["components"] if "props" in c}

    def fn(self, elem_id: str, event: str) -> int:
        return next(d["id"] for d in self.config["dependencies"] if [self.ids[elem_id], event] in d["targets"])

    def value(self, elem_id: str):
        return next(c["props"]["value"] for c in self.config["components"] if c["id"] == self.ids[elem_id])

    def upload(self, array: np.ndarray, name: str) -> dict:
        """``array`` saved as the image file ``name`` and uploaded: its FileData."""
        path = Path(os.environ.get("GRADIO_TEMP_DIR", "/tmp")) / f"{uuid.uuid4().hex}_{name}"
        Image.fromarray(array).save(path)
        return self.upload_file(path, name)

    def upload_file(self, path: Path, name: str | None = None) -> dict:
        """The file ``path`` uploaded as the browser uploads it: its FileData."""
        name = name or Path(path).name
        with open(path, "rb") as f:
            (server_path,) = httpx.post(self.url + "/upload", files={"files": (name, f)}, timeout=120).json()
        return {"path": server_path, "meta": {"_type": "gradio.FileData"}, "orig_name": name}

    def join(self, fn_index: int, data: list) -> str:
        """Joins the queue with an event, reading nothing: its event id."""
        body = dict(data=data, fn_index=fn_index, trigger_id=None, session_hash=self.session, event_data=None)
        r = httpx.post(self.url + "/queue/join", json=body)
        r.raise_for_status()
        return r.json()["event_id"]

    def messages(self):
        """The session's stream: its messages as they come, until its event completes (closing the generator drops
        the stream)."""
        with httpx.stream("GET", self.url + "/queue/data", params={"session_hash": self.session}, timeout=300) as s:
            for line in s.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    yield message
                    if message.get("msg") == "process_completed":
                        return

    def submit(self, fn_index: int, data: list) -> list[dict]:
        """Runs one queued event to its end: the messages the server streamed."""
        self.join(fn_index, data)
        return list(self.messages())

    def predict(self, fn_index: int, data: list):
        """An event outside the queue (queue=False), as the browser posts it."""
        r = httpx.post(
            self.url + "/run/predict",
            json={"data": data, "fn_index": fn_index, "session_hash": self.session},
            timeout=60,
        )
        r.raise_for_status()
        return r.json()["data"]

    def inpaint_event(self, model: str, steps: int, jump: int, resample: int, samples: int = 1) -> tuple[int, list]:
        """The Inpaint button's (fn_index, data), with the face and its left half painted."""
        face = np.asarray(Image.open(FACE).convert("RGBA"))
        layer = np.zeros_like(face)
        layer[:, : face.shape[1] // 2] = (30, 90, 255, 128)
        editor = {
            "background": self.upload(face, "face.png"),
            "layers": [self.upload(layer, "layer.png")],
            "composite": None,
        }
        data = [editor, "draw", model, steps, jump, resample, 0, False, samples, False, False]
        fn = self.fn("run", "click")
        inputs = next(d["inputs"] for d in self.config["dependencies"] if d["id"] == fn)
        values = {c["id"]: c["props"].get("value") for c in self.config["components"] if "props" in c}
        return fn, data + [values.get(i) for i in inputs[len(data) :]]  # the others as the page shows them

    def inpaint(self, model: str, steps: int, jump: int, resample: int, samples: int = 1) -> list[dict]:
        """The Inpaint button run to its end: the messages the server streamed."""
        return self.submit(*self.inpaint_event(model, steps, jump, resample, samples))

    def api_event(self, model: str, steps: int, jump: int, resample: int) -> tuple[int, list]:
        """``/inpaint``'s (fn_index, data), as gradio_client sends them: the face and the left_half preset."""
        fn = next(d["id"] for d in self.config["dependencies"] if d.get("api_name") == "inpaint")
        image = self.upload(np.asarray(Image.open(FACE).convert("RGB")), "face.png")
        return fn, [image, "left_half", model, steps, jump, resample, 0, 1, False, "auto", None, None]
