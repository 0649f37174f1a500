"""The image inputs' guards: every image a request brings is measured from its file's header, before any decode.

Gradio's ImageEditor (6.31.0) takes what a client sends as it is: its server function ``accept_blobs`` lets the
client's layer index set a list's length (``[None] * index``), keeps every blob sent in one dict shared by all
sessions until an event claims it, and its ``preprocess`` decodes the background, every layer and the composite at
whatever size they are. :func:`guard_editor` wraps both on the instance (a subclass would make Gradio write a .pyi
file), and :func:`guard_image` does the same for a gr.Image. A refused image is a gr.Error with its message."""

from __future__ import annotations

import types
from collections import OrderedDict

import gradio as gr

from .requests import pixels_refusal

__all__ = ["BLOBS_BYTES_MAX", "LAYERS_MAX", "guard_editor", "guard_image"]

LAYERS_MAX = 4  # the page draws on one layer; a preset adds one
BLOBS_BYTES_MAX = 256 * 2**20  # unclaimed editor blobs held at once, all sessions together
REFUSALS_KEPT = 256  # refused blob ids remembered, for the event that sends them


def _path(file) -> str | None:
    return getattr(file, "path", None) or (file.get("path") if isinstance(file, dict) else None)


def guard_image(component: gr.Image, pixels_max: int) -> gr.Image:
    """``component`` (a gr.Image taking files) refusing an image over ``pixels_max`` from its header, before
    Gradio's preprocess decodes it."""
    plain = component.preprocess

    def preprocess(payload):
        path = _path(payload)
        if path is not None and (why := pixels_refusal(path, pixels_max, component.label or "image")):
            raise gr.Error(why)
        return plain(payload)

    component.preprocess = preprocess
    return component


def _blob_refusal(blob_storage: dict, info: dict, blob, pixels_max: int) -> str | None:
    """Why a blob sent to ``accept_blobs`` is refused, or None."""
    if info.get("type") == "layer":
        try:
            index = int(info.get("index"))
        except (TypeError, ValueError):
            index = -1
        if not 0 <= index < LAYERS_MAX:
            return f"The editor sends at most {LAYERS_MAX} layers."
    if not isinstance(blob, (bytes, bytearray)):
        return "The editor sent no image."
    if why := pixels_refusal(blob, pixels_max, "editor's image"):
        return why
    held = sum(len(b or b"") for v in blob_storage.values() for b in (v.background, v.composite, *v.layers))
    if held + len(blob) > BLOBS_BYTES_MAX:
        return "The server holds too many images right now: try again in a minute."
    return None


def _payload_refusal(payload, pixels_max: int) -> str | None:
    """Why an editor value sent as files is refused, or None."""
    if len(payload.layers or []) > LAYERS_MAX:
        return f"The editor sends at most {LAYERS_MAX} layers."
    for path in filter(None, map(_path, [payload.background, payload.composite, *(payload.layers or [])])):
        if why := pixels_refusal(path, pixels_max, "editor's image"):
            return why
    return None


def guard_editor(editor: gr.ImageEditor, pixels_max: int) -> gr.ImageEditor:
    """``editor`` with its blobs and files checked before they are kept or decoded: a layer index below
    LAYERS_MAX, every image within ``pixels_max`` (read from its header), at most BLOBS_BYTES_MAX of unclaimed blobs
    in all (a blob past it is refused; none already held is dropped, so no queued event loses its image). A refused
    blob's id is remembered, and the event that sends it is refused with its message (a gr.Error)."""
    editor.refused = OrderedDict()  # blob id -> message

    def accept_blobs(self, data):
        blob_id = data.data.get("id")
        why = _blob_refusal(self.blob_storage, data.data, data.files[0][1] if data.files else None, pixels_max)
        if why is None:
            return type(self).accept_blobs(self, data)
        self.blob_storage.pop(blob_id, None)
        self.refused[blob_id] = why
        while len(self.refused) > REFUSALS_KEPT:
            self.refused.popitem(last=False)
        return None

    def preprocess(self, payload):
        blob_id = getattr(payload, "id", None)
        why = self.refused.get(blob_id) if blob_id is not None else None
        if why is None and payload is not None:
            why = _payload_refusal(payload, pixels_max)
        if why is not None:
            raise gr.Error(why)
        return type(self).preprocess(self, payload)

    accept_blobs._is_server_fn = True  # what gradio's @server marks
    editor.accept_blobs = types.MethodType(accept_blobs, editor)  # bound: a session's copy binds to itself
    editor.preprocess = types.MethodType(preprocess, editor)
    return editor
