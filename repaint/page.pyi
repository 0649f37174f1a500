"""The page's Gradio parts that are neither layout nor machinery: input components that answer a bad value with a
clear message instead of Gradio's generic one, and the page's script, which says in the page what the browser
alone sees (an upload refused as too large, a file the editor cannot read). Imported by app.py only."""

from __future__ import annotations

import gradio as gr

__all__ = ["ReadableImage", "WholeNumber", "head"]

from gradio.events import Dependency

class WholeNumber(gr.Number):
    """A gr.Number whose bad value (``steps="abc"`` from a client) is a gr.Error naming the input, not Gradio's
    "The upstream Gradio app has raised an exception": the value fails in preprocessing, before the handler."""

    @classmethod
    def get_block_name(cls) -> str:
        return "number"  # the browser's component

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (TypeError, ValueError, OverflowError):
            message = f"{self.label} must be a whole number, got {str(payload)[:40]!r}"
        raise gr.Error(message)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class ReadableImage(gr.Image):
    """A gr.Image whose unreadable file (a corrupt PNG) is a gr.Error saying so, not Gradio's generic message."""

    @classmethod
    def get_block_name(cls) -> str:
        return "image"

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a damaged file
            message = (f"The {self.label} file could not be read as an image ({type(e).__name__}): it is damaged or "
                       f"not an image. Send a PNG, JPEG or WebP file.")
        raise gr.Error(message)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


# The browser sends an upload over the size limit, or fails to read a file dropped on the editor, without telling the
# page (gradio 6.31.0: a 413 in the console, an empty editor). This script says so in a banner (#page-alert).
_SCRIPT = """<script>
(() => {
  const say = (text) => {
    let el = document.getElementById("page-alert");
    if (!el) {
      el = document.createElement("div");
      el.id = "page-alert";
      el.setAttribute("role", "alert");
      el.title = "click to close";
      el.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:10000;padding:10px 16px;" +
        "background:#b91c1c;color:#fff;font:15px/1.4 sans-serif;cursor:pointer";
      el.onclick = () => el.remove();
      document.body.appendChild(el);
    }
    el.textContent = text;
  };
  const original = window.fetch;
  window.fetch = async function (...args) {
    const response = await original.apply(this, args);
    if (response.status === 413) say(%(too_big)s);
    return response;
  };
  const check = async (files) => {
    for (const f of files || []) {
      if (f.type && !f.type.startsWith("image/")) { say(`"${f.name}" is not an image: ` + %(unreadable)s); continue; }
      try { (await createImageBitmap(f)).close(); }
      catch (e) { say(`"${f.name}" could not be read as an image: ` + %(unreadable)s); }
    }
  };
  document.addEventListener("change", (e) => {
    const t = e.target;
    if (t instanceof HTMLInputElement && t.type === "file" && t.closest("#editor")) check(t.files);
  }, true);
  document.addEventListener("drop", (e) => { if (e.target.closest && e.target.closest("#editor")) check(e.dataTransfer && e.dataTransfer.files); }, true);
})();
</script>"""


def head(limit: str, photo_button: str) -> str:
    """The page's <head> script, its messages naming the upload ``limit`` and the button that takes photos."""
    import json

    too_big = (f"This file is too large to send: the server takes files up to {limit} (memory and disk are shared "
               f"by every visitor). The editor sends an image as PNG, so a large photo dropped on it can exceed "
               f"that: use the \u201c{photo_button}\u201d button, which sends the photo as it is, or a smaller image.")
    unreadable = "it is damaged or not a format the browser can show. Try a PNG, JPEG or WebP file."
    return _SCRIPT % {"too_big": json.dumps(too_big), "unreadable": json.dumps(unreadable)}