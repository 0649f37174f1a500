"""The public-link benchmark: a hostile or careless visitor against ``python app.py`` in a subprocess (bundled model,
CPU), the server's memory and CPU read from ``/proc`` (issue 30's goals; docs/security.md lists the limits):

    python -m repaint.space.hostile --write docs/benchmarks.md

- **accept_blobs**: editor blobs with a layer index of ten million, -1 and "null", and a 169-megapixel background;
- **a 13000x13000 PNG** (190 kB) on every image path: ``/inpaint``'s image and mask file, the photo button, the
  editor's background;
- **four sessions** that each put a 49-megapixel photo in the editor, run once and leave;
- **an absurd request** (T=1000, j=1, r=20, 4 samples, Compare) on ``/inpaint``;
- **a client that never listens**, and one that drops its stream, during a run of the paper's settings.

Memory: the growth of the server's resident set (VmRSS), and of its peak (VmHWM, reset through clear_refs) during a
request. CPU: the server's user and system time per second of wall time."""

from __future__ import annotations

import argparse
import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from ..memory import memory_mb, reset_peak
from .wire import FACE, Page

ROOT = Path(__file__).resolve().parents[2]
ABSURD = dict(steps=1000, jump_length=1, jump_n_sample=20, num_samples=4, compare=True)  # 19,981 calls of 8 rows
PAPER = ("bundled", 250, 10, 10)


class Server:
    """``python app.py`` (of the checkout at ``root``) on a free loopback port, its /proc figures."""

    def __init__(self, root: Path = ROOT):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
        cmd = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 180
        while True:
            try:
                if httpx.get(self.url + "/config", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.5)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)

    def rss(self) -> float:
        return memory_mb(self.proc.pid, "VmRSS")

    def reset_peak(self) -> float:
        return reset_peak(self.proc.pid)

    def peak(self) -> float:
        return memory_mb(self.proc.pid, "VmHWM")

    def cpu(self) -> float:
        """User and system seconds of the server so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def huge_png(path: Path, side: int = 13000) -> Path:
    """A ``side`` x ``side`` 8-bit grey PNG of zeros, written without holding its pixels (190 kB at 13000)."""
    raw = zlib.compressobj(9)
    data = b"".join(raw.compress(b"\0" * (side + 1)) for _ in range(side)) + raw.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def photo(path: Path, side: int = 7000) -> Path:
    """A ``side`` x ``side`` photo-like JPEG (49 megapixels at 7000)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (side // 100, side // 100, 3), dtype=np.uint8)
    Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR).save(path, quality=85)
    return path


def peak_growth(server: Server, request) -> tuple[float, object]:
    """(the server's peak growth in MB during ``request()``, what it returned)."""
    before = server.reset_peak()
    out = request()
    return server.peak() - before, out


def editor_value(background: dict, layers=()) -> dict:
    return {"background": background, "layers": list(layers), "composite": None}


def outcome(page: Page, fn: int, data: list) -> dict:
    """The last message of an event run through the queue."""
    return page.submit(fn, data)[-1]


def blobs(server: Server, huge: Path) -> list[tuple[str, str, str]]:
    page = Page(server.url)
    editor = page.ids["editor"]
    base = server.rss()
    growths = []
    for i, (index, kind, blob) in enumerate(
        [("10000000", "layer", png_bytes()), ("-1", "layer", png_bytes()), ("null", "layer", png_bytes())]
        + [("0", "background", huge.read_bytes())]
    ):
        fields = dict(
            component_id=str(editor), session_hash="hostile", fn_name="accept_blobs", type=kind, index=index, id=f"b{i}"
        )
        growth, _ = peak_growth(
            server,
            lambda fields=fields, blob=blob: httpx.post(
                page.url + "/component_server", data=fields, files={"file": ("blob", blob, "image/png")}, timeout=60
            ),
        )
        growths.append(growth)
    kept = server.rss() - base
    return [
        ("hostile accept_blobs requests (4): peak growth, the largest", f"{max(growths):.1f} MB", "at most 20 MB"),
        ("... kept after them", f"{kept:+.1f} MB", "nothing kept"),
    ]


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (32, 32), (30, 90, 255, 128)).save(out, format="PNG")
    return out.getvalue()


def huge_paths(server: Server, huge: Path) -> list[tuple[str, str, str]]:
    from gradio_client import Client, handle_file

    client, page = Client(server.url, verbose=False), Page(server.url)
    small = dict(model="bundled", steps=10, jump_length=5, jump_n_sample=2, seed=0, num_samples=1, compare=False)

    def refused(call) -> bool:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - the refusal
            return "13000x13000" in str(e)
        return False

    rows = []
    paths = {
        "/inpaint's image": lambda: refused(
            lambda: client.predict(handle_file(str(huge)), "left_half", api_name="/inpaint", **small)
        ),
        "/inpaint's mask file": lambda: refused(
            lambda: client.predict(handle_file(str(FACE)), handle_file(str(huge)), api_name="/inpaint", **small)
        ),
        "the photo button": lambda: (
            "13000x13000" in str(outcome(page, page.fn("photo", "upload"), [page.upload_file(huge)]))
        ),
        "the editor's background": lambda: (
            "13000x13000" in str(outcome(page, page.fn("editor", "upload"), sync_data(page.upload_file(huge))))
        ),
    }
    for name, call in paths.items():
        growth, ok = peak_growth(server, call)
        rows.append(
            (
                f"a 13000x13000 PNG on {name}: peak growth",
                f"{growth:+.0f} MB ({'refused' if ok else 'TAKEN'})",
                "at most +300 MB, refused",
            )
        )
    return rows


def sync_data(background: dict) -> list:
    """The editor's upload event's inputs (editor, preset, model, seed, shown) for ``background``."""
    return [editor_value(background), "left_half", "bundled", 0, None]


def sessions(server: Server, big: Path) -> list[tuple[str, str, str]]:
    base = server.rss()
    for _ in range(4):
        page = Page(server.url)
        file = page.upload_file(big)
        outcome(page, page.fn("editor", "upload"), sync_data(file))  # the editor shows it, the session keeps it
        fn, data = page.inpaint_event("bundled", 10, 5, 2)
        data[0] = editor_value(file, [page.upload(layer(big), "layer.png")])
        data[1] = "left_half"
        last = outcome(page, fn, data)
        assert last.get("success"), last
    time.sleep(5)
    return [
        (
            "four sessions with a 49 MP photo, run once and gone: kept 5 s later",
            f"{server.rss() - base:+.0f} MB",
            "at most 300 MB",
        )
    ]


def layer(big: Path) -> np.ndarray:
    """The left_half preset as the editor draws it on ``big`` (inside the centred square: a run at the model's
    size, as a preset runs)."""
    from .pictures import mask_layer, preset_mask

    with Image.open(big) as im:
        w, h = im.size
    return mask_layer(preset_mask("left_half", w, h, 32))


def absurd(server: Server) -> list[tuple[str, str, str]]:
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    start = time.monotonic()
    try:
        client.predict(handle_file(str(FACE)), "left_half", model="bundled", seed=0, api_name="/inpaint", **ABSURD)
        said = "ACCEPTED"
    except Exception as e:  # noqa: BLE001 - the refusal
        said = "refused" if "19,981 calls" in str(e) else f"failed: {e}"
    return [
        (
            "an absurd /inpaint request (19,981 calls of 8 rows)",
            f"{said} in {time.monotonic() - start:.2f} s",
            "refused within 1 s",
        )
    ]


def idle_after(server: Server, leave) -> float:
    """Seconds from ``leave()`` until the server uses at most 0.25 core over a second (60 at most)."""
    start = time.monotonic()
    leave()
    while time.monotonic() - start < 60:
        cpu, t = server.cpu(), time.monotonic()
        time.sleep(1.0)
        if (server.cpu() - cpu) / (time.monotonic() - t) <= 0.25:
            return time.monotonic() - start
    return float("inf")


def gone(server: Server) -> list[tuple[str, str, str]]:
    rows = []
    page = Page(server.url)
    never = idle_after(server, lambda: page.join(*page.inpaint_event(*PAPER)))
    rows.append(("a page run whose stream is never opened: idle after", f"{never:.1f} s", "at most 10 s"))
    api = Page(server.url)
    never = idle_after(server, lambda: api.join(*api.api_event(*PAPER)))
    rows.append(("an /inpaint run whose stream is never opened: idle after", f"{never:.1f} s", "at most 10 s"))
    dropped = Page(server.url)

    def drop():
        dropped.join(*dropped.inpaint_event(*PAPER))
        stream = dropped.messages()
        next(m for m in stream if m.get("msg") == "progress")
        stream.close()

    rows.append(("a page run whose stream is dropped: idle after", f"{idle_after(server, drop):.1f} s", "at most 10 s"))
    return rows


def markdown(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| what a visitor does | measured | goal |", "|---|---:|---|"]
    return "\n".join([*lines, *(f"| {a} | {b} | {c} |" for a, b, c in rows)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A hostile visitor against python app.py (see the module's doc).")
    p.add_argument("--write", metavar="MD", help="also (re)write this benchmark's section of docs/benchmarks.md")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        huge, big = huge_png(Path(tmp) / "huge.png"), photo(Path(tmp) / "photo.jpg")
        server = Server()
        try:
            rows = [*blobs(server, huge), *huge_paths(server, huge), *sessions(server, big), *absurd(server)]
            rows += gone(server)
        finally:
            server.close()
    table = markdown(rows)
    print(table)
    if args.write:
        import torch

        from ..bench import _device_name, write_section

        command = "python -m repaint.space.hostile --write docs/benchmarks.md"
        machine = f"{_device_name(torch.device('cpu'))}, torch {torch.__version__}, a `python app.py` subprocess"
        write_section(args.write, "A public link against a hostile visitor: bundled", command, machine, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
