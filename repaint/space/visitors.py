"""One run per visitor: a visitor with a run running or waiting is refused a second one before it queues.

A visitor is the page's session (Gradio's session hash) and, for ``/inpaint`` (where a script picks a new session
hash at will), also the caller's address as the nearest proxy reports it: the last entry of X-Forwarded-For, else
the connection's own. A loopback address counts as no one (the owner's scripts on the machine itself; and a share
link's tunnel, whose requests arrive from the machine, gets only the session rule). The page's runs are not tied to
an address: a class behind one router is many visitors.

The page's run and ``/inpaint`` share one concurrency id (:data:`RUN_CONCURRENCY`), so that they also share its
limit. The check wraps the queue's ``push`` (Gradio 6.31.0's ``Queue.push(body, request, username)``, private): it
reads Gradio's own record of what waits (``event_queue_per_concurrency_id``) and what runs (``active_jobs``), so it
keeps no state of its own to leak, and a run that ended, or whose client left, no longer counts.
``tests/test_visitors.py`` fails if that layout changes."""

from __future__ import annotations

import ipaddress
import types

from gradio import route_utils

__all__ = ["BUSY", "RUN_CONCURRENCY", "address", "guard_queue"]

RUN_CONCURRENCY = "run"  # the page's Inpaint and /inpaint
BUSY = (
    "You already have a run in progress or waiting: this server takes one run at a time from each visitor. Wait "
    "for it to finish (or press Stop), then run again."
)


def address(request) -> str | None:
    """The caller's address as the nearest proxy reports it (the last X-Forwarded-For entry, else the connection's),
    None for a loopback address or none."""
    forwarded = request.headers.get("x-forwarded-for", "") if request is not None else ""
    host = forwarded.split(",")[-1].strip() or getattr(getattr(request, "client", None), "host", None)
    try:
        return None if ipaddress.ip_address(host).is_loopback else host
    except ValueError:  # not an address ("testclient", a host name): a name of its own still
        return host or None


def _visitor(session_hash: str | None, fn, request, api_names) -> set[tuple[str, str]]:
    """Who asks for ``fn``: ("session", hash), and for an API call ("address", it)."""
    keys = {("session", session_hash)} if session_hash else set()
    if fn.api_name in api_names and (where := address(request)):
        keys.add(("address", where))
    return keys


def _runs(queue, concurrency_id: str):
    """The events of ``concurrency_id`` waiting or running whose client is still there."""
    waiting = queue.event_queue_per_concurrency_id.get(concurrency_id)
    running = [e for jobs in queue.active_jobs if jobs for e in jobs if e.concurrency_id == concurrency_id]
    return [e for e in [*(waiting.queue if waiting else []), *running] if e.alive]


def guard_queue(blocks, stopping=lambda session: False, concurrency_id=RUN_CONCURRENCY, api_names=("inpaint",)):
    """Refuse, before it queues, an event of ``concurrency_id`` from a visitor who has one waiting or running
    (except a run ``stopping(session)`` says is stopping: the visitor pressed Stop and runs again). The page hears
    :data:`BUSY` as an error (HTTP 400); ``/inpaint``'s callers as a validation error (HTTP 422), the one refusal
    gradio_client reports with its message. Call again after ``blocks.queue()`` (it makes a new queue)."""
    queue = blocks._queue
    push = queue.push
    joining: list[set] = []  # the visitors of the pushes under way (push awaits before it queues the event)

    async def guarded(self, body, request, username):
        try:
            fn = route_utils.get_fn(blocks, None, body)
        except Exception:  # noqa: BLE001 - Gradio's own push answers a bad index
            fn = None
        if fn is None or fn.concurrency_id != concurrency_id:
            return await push(body, request, username)
        asking = _visitor(body.session_hash, fn, request, api_names)
        held = [
            _visitor(e.session_hash, e.fn, e.request, api_names)
            for e in _runs(self, concurrency_id)
            if not stopping(e.session_hash)
        ]
        if any(asking & keys for keys in [*held, *joining]):
            if fn.api_name in api_names:
                return False, [{"__type__": "validate", "is_valid": False, "message": BUSY}], "validator_error"
            return False, BUSY, "error"
        joining.append(asking)
        try:
            return await push(body, request, username)
        finally:
            joining.remove(asking)

    queue.push = types.MethodType(guarded, queue)
