"""Whether a run's client is still there: a run nobody reads stops at its next model call.

Gradio (6.31.0) hands an event's messages to its client through one asyncio queue per session
(``blocks._queue.pending_messages_per_session``), which the client's stream (``/queue/data``, or
``/call/<api>/<event id>``) empties as it reads. Gradio itself notices a stream that closes: it marks the session's
events not alive and drops its queued ones, but ends a running one only at the handler's next yield, which on the
page may be many model calls away. It never notices a client that joined the queue and never opened its stream, nor
one that stopped reading (its messages just pile up).

:class:`Readers` looks at those queues. A session's client is gone when its queue is no more (Gradio deletes it
when the stream is cancelled), when one of its running events was marked not alive, or when its oldest unread
message, one of an event still pending, has stayed unread for ``grace_s`` (a thread of its own notes the oldest
message of each session; a message left over from an event that ended does not count). A run
:meth:`Readers.watching` its session finds its Stop flag set at the next look, made before every model call (off
ZeroGPU in the worker's callback, on ZeroGPU at the next event, see :mod:`.runner`); a run whose client is already
gone when it leaves the queue does not start.

The queues are Gradio's private state, read without a lock from another thread: a read that races with the server's
event loop is skipped and made again at the next poll. ``tests/test_clients.py`` fails if the layout changes."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref

log = logging.getLogger(__name__)

__all__ = ["GRACE_S", "POLL_S", "READERS", "Readers"]

GRACE_S = 5.0  # a message unread this long: the client is gone (a reading client takes each within milliseconds)
POLL_S = 0.25  # how often the queues are looked at


class Readers:
    """Watches the message queues of the Blocks given to :meth:`add` (one watcher thread; the Blocks are held
    weakly)."""

    def __init__(self, grace_s: float = GRACE_S, poll_s: float = POLL_S, clock=time.monotonic):
        self.grace_s, self.poll_s, self.clock = grace_s, poll_s, clock
        self.blocks: weakref.WeakSet = weakref.WeakSet()
        # session -> (id of its oldest unread message, when first seen, its event's id)
        self.heads: dict[str, tuple[int, float, str | None]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------------- reading
    def gone(self, blocks, session: str) -> str | None:
        """Why the client of ``session`` is gone (its stream closed, or a message unread for ``grace_s``), or None
        while it reads (or has nothing to read)."""
        queue = getattr(blocks, "_queue", None)
        if queue is None:
            return None
        pending = queue.pending_messages_per_session
        if session not in pending:
            return "its stream closed"
        if any(job.session_hash == session and not job.alive for jobs in queue.active_jobs if jobs for job in jobs):
            return "it disconnected"
        seen = self.heads.get(session)  # unread for grace_s: a message of an event still pending, not one left over
        if seen is not None and self.clock() - seen[1] >= self.grace_s and seen[2] in self._pending(queue, session):
            return f"it read nothing for {self.grace_s:g} s"
        return None

    @staticmethod
    def _pending(queue, session: str) -> set:
        """The ids of the session's events whose completion its client has not read."""
        try:
            return set(queue.pending_event_ids_session.get(session, ()))
        except RuntimeError:  # changed while copied
            return set()

    def scan(self) -> None:
        """Notes every session's oldest unread message, and when it was first seen."""
        now, heads = self.clock(), {}
        for blocks in list(self.blocks):
            queue = getattr(blocks, "_queue", None)
            if queue is None:
                continue
            try:
                sessions = list(queue.pending_messages_per_session.items())
            except RuntimeError:  # changed by the event loop while copied: seen at the next poll
                return
            for session, messages in sessions:
                try:
                    message = messages._queue[0]  # asyncio.Queue's deque: the oldest message not yet taken
                except IndexError:
                    continue  # read to the end
                seen = self.heads.get(session)
                fresh = (id(message), now, getattr(message, "event_id", None))
                heads[session] = seen if seen is not None and seen[0] == id(message) else fresh
        self.heads = heads

    def _watch(self) -> None:
        pause = threading.Event()  # never set: waits poll_s (not time.sleep, which a test may patch for its thread)
        while True:
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - the watcher must outlive one odd read of another thread's state
                log.exception("the client watcher's scan failed")
            pause.wait(self.poll_s)

    # ----------------------------------------------------------------------------------------------- runs
    def add(self, blocks) -> None:
        """Watch the queues of ``blocks`` from now on (the watcher thread started with the first), so that a run
        that leaves the queue after its client can be told from the first."""
        with self.lock:
            self.blocks.add(blocks)
            if self.thread is None:
                self.thread = threading.Thread(target=self._watch, daemon=True, name="repaint-readers")
                self.thread.start()

    @contextlib.contextmanager
    def watching(self, request, flag):
        """Within the block, ``flag`` (the run's :class:`repaint.space.runner.StopFlag`, looked at before every model
        call) is found set once the client of ``request`` (a gr.Request) is gone; it is set at once if the client is
        gone already (a run that left the queue after its client). Without a session or a server (a handler called
        directly), nothing is watched."""
        session = getattr(request, "session_hash", None)
        app = getattr(getattr(request, "request", None), "app", None)
        blocks = app.get_blocks() if hasattr(app, "get_blocks") else None
        if not session or blocks is None:
            yield
            return
        self.add(blocks)
        if why := self.gone(blocks, session):
            log.info("client gone (%s) before its run started: not run", why)
            flag.set()

        def gone() -> str | None:
            if why := self.gone(blocks, session):
                log.info("client gone (%s): its run stops at its next model call", why)
            return why

        flag.gone = gone
        try:
            yield
        finally:
            flag.gone = None


READERS = Readers()  # the server's one watcher
