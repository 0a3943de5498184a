"""Building one message from unsent rows: runs on the store thread (it reads the store), returns plain data.

Readings are packed up to the target size (IoT Core meters in 5 KB units); after an outage, when the backlog is
more than four backlog-sized messages, the target switches to ``backlog_message_bytes`` (fewer, larger messages
drain faster under IoT Core's per-connection limits). Events and cycles go as they are (small, never lingered).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.store.store import Store
from agent.uplink.envelope import encode_cycles, encode_events, pack_list, pack_readings

# A readings message counts as full (sent without waiting out the linger) from this share of the target size on.
# IoT Core meters rules and actions per 5 KB of message, so a message sent at 85 % of the target paid for units it
# left empty (docs/cost-per-cell-month.md); with a long linger, waiting for the last few batches costs nothing.
FULL_FRACTION = 0.97

STREAM_ORDER = ("events", "cycles", "readings")  # alarms first: a backlog of readings never delays an event


@dataclass(slots=True)
class Job:
    stream: str
    lo: int
    hi: int
    n: int
    payload: bytes
    partial: bool = False  # smaller than the target size: may linger for more data
    ts_max_ms: int = 0
    ts_min_ms: int = 0
    t_sent: float = 0.0  # loop time of the publish
    settled: bool = False  # the outcome (PUBACK, failure or ack timeout) was handled


@dataclass(frozen=True, slots=True)
class Packing:
    rig: str
    envelope: str
    target_bytes: int
    backlog_bytes: int
    bytes_per_reading: float  # running estimate, kept by the uplink on the loop side


def build(
    store: Store, p: Packing, stream: str, after: int, upto: int | None, partial_ok: bool
) -> tuple[Job | None, Packing]:
    """The next message of ``stream`` after seq ``after`` (up to ``upto`` for a retry); returns it and the
    packing with its bytes-per-reading estimate updated."""
    target = p.target_bytes
    bpr = p.bytes_per_reading
    backlog = (store.last_seq["readings"] - after) * bpr
    if upto is None and backlog > 4 * p.backlog_bytes:
        target = max(target, p.backlog_bytes)  # after an outage: fewer, larger messages
    if stream == "readings":
        limit = int(target / bpr * 1.25) + 8 if upto is None else upto - after
        rows = store.unsent.readings(after_seq=after, limit=limit, upto_seq=upto)
        if not len(rows):
            return None, p
        payload, n = pack_readings(p.rig, rows, store.cell_ids, p.envelope, target, bpr)
        seen = Packing(p.rig, p.envelope, p.target_bytes, p.backlog_bytes, 0.8 * bpr + 0.2 * (len(payload) / n))
        partial = partial_ok and n == len(rows) and len(payload) < target * FULL_FRACTION
        ts = rows.ts_ms[:n]
        job = Job("readings", int(rows.seq[0]), int(rows.seq[n - 1]), n, payload, partial, int(ts.max()), int(ts.min()))
        return job, seen
    items = (store.unsent.events if stream == "events" else store.unsent.cycles)(
        after_seq=after, upto_seq=upto, limit=200
    )
    if not items:
        return None, p
    encode = encode_events if stream == "events" else encode_cycles
    payload, n = pack_list(encode, p.rig, items, target)
    return Job(stream, items[0]["seq"], items[n - 1]["seq"], n, payload, False, int(items[n - 1]["ts"])), p


def next_job(
    store: Store, p: Packing, retry: tuple[str, int, int] | None, cursors: dict[str, int], streams: tuple[str, ...]
) -> tuple[Job | None, Packing, dict[str, int]]:
    """The retry's message if there is one, else the first stream (of ``streams``) with unsent rows after its
    cursor. Also returns the committed counters as of the read (rows below them with nothing unsent can be
    skipped: acknowledged in an earlier run, or dropped by the cap)."""
    seen = dict(store.last_seq)
    if retry is not None:
        stream, lo, hi = retry
        job, p = build(store, p, stream, lo - 1, hi, partial_ok=False)
        return job, p, seen
    for stream in streams:
        job, p = build(store, p, stream, cursors[stream], None, partial_ok=stream == "readings")
        if job is not None:
            return job, p, seen
    return None, p, seen
