"""Model-based test of the store: random appends, acknowledgements, restarts, crashes and a tiny byte cap, checked
after every step against a reference model that is a few dicts.

What must hold whatever the order: every seq a stream hands out is new (never reused, also across restarts and
crashes) and follows the last one; nothing committed goes missing, except acknowledged readings (retention, the
cap) and the oldest unsent readings the cap drops, which are counted exactly in ``dropped_readings``; events and
cycles are never dropped; the cursor over unsent rows returns exactly the unsent rows, in seq order.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent.store import Store
from drivers.base import Event, ReadingBatch

CELLS = tuple("abcdefgh")
CAP_BYTES = 56 * 1024  # the empty schema takes 44 KiB: the cap drops readings within a few appends


def batch(ticks: int, t0_ms: int) -> ReadingBatch:
    n = len(CELLS)
    return ReadingBatch.build(
        CELLS,
        np.tile(np.arange(n), ticks),
        np.repeat(t0_ms + 100 * np.arange(ticks), n),
        np.full(n * ticks, 3.7),
        np.full(n * ticks, -1.0),
        np.full(n * ticks, 25.0),
    )


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="store-model-"))
        self.path = self.dir / "s.db"
        self.ts_ms = 1_700_000_000_000  # the model's clock: retention is judged against it, not the wall clock
        self.store = self._open()
        self.sent: dict[str, dict[int, bool]] = {"readings": {}, "events": {}, "cycles": {}}  # alive rows
        self.last = {"readings": 0, "events": 0, "cycles": 0}  # highest seq ever handed out
        self.gone_sent = 0  # acknowledged readings removed (allowed)
        self.dropped = 0  # unsent readings the cap dropped (must equal meta.dropped_readings)

    def _open(self) -> Store:
        return Store.open(
            self.path,
            synchronous="OFF",
            max_bytes=CAP_BYTES,
            min_free_bytes=0,
            reserve_bytes=0,
            keep_sent_s=3600,
            clock_ms=lambda: self.ts_ms,
        )

    def teardown(self) -> None:
        try:
            self.store.close()
        except Exception:  # noqa: BLE001 - closed by a crash step already
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ rules
    @rule(ticks=st.integers(0, 40), n_events=st.integers(0, 3), n_cycles=st.integers(0, 2), old=st.booleans())
    def append(self, ticks: int, n_events: int, n_cycles: int, old: bool) -> None:
        # "old" readings are older than the retention window: acknowledged ones may be expired by maintenance.
        self.ts_ms += 1000
        t0 = self.ts_ms - (10 * 3600 * 1000 if old else 0)
        events = [Event("test.e", f"e{k}", ts_ms=t0) for k in range(n_events)]
        cycles = [{"cell": "a", "cycle": k, "ts": t0} for k in range(n_cycles)]
        first, last = self.store.append(batch(ticks, t0) if ticks else None, "model", events, cycles)
        n = ticks * len(CELLS)
        if n:
            assert (first, last) == (self.last["readings"] + 1, self.last["readings"] + n), "seq must follow on"
        for stream, count in (("readings", n), ("events", n_events), ("cycles", n_cycles)):
            lo = self.last[stream] + 1
            self.last[stream] += count
            assert self.store.last_seq[stream] == self.last[stream]
            for s in range(lo, lo + count):
                assert s not in self.sent[stream]
                self.sent[stream][s] = False

    @rule(stream=st.sampled_from(["readings", "events", "cycles"]), data=st.data())
    def ack(self, stream: str, data: st.DataObject) -> None:
        """As the uplink does: read unsent rows through the cursor, acknowledge some ranges of them."""
        if stream == "readings":
            seqs = self.store.unsent.readings(limit=60).seq.tolist()
        else:
            seqs = [r["seq"] for r in getattr(self.store.unsent, stream)(limit=60)]
        if not seqs:
            return
        picked = sorted(data.draw(st.sets(st.sampled_from(seqs), max_size=len(seqs))))
        ranges = [(s, s) for s in picked]
        self.store.acker.mark_sent(stream, ranges)
        for s in picked:
            self.sent[stream][s] = True

    @rule()
    def maintain(self) -> None:
        self.store.maintain(chunk=200)
        self._account_for_removed_readings()

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = self._open()
        assert self.store.opened == [], [e.message for e in self.store.opened]

    @rule()
    def crash(self) -> None:
        """The process dies: no seq hint written at close, no checkpoint; committed transactions survive."""
        self.store.db.close()
        self.store = self._open()
        assert self.store.opened == [], [e.message for e in self.store.opened]

    # ------------------------------------------------------------------ checks
    def _account_for_removed_readings(self) -> None:
        present = {s for (s,) in self.store.conn.execute("SELECT seq FROM readings")}
        alive = self.sent["readings"]
        removed = [s for s in alive if s not in present]
        dropped_before = self.dropped
        unsent_left = [s for s in present if not alive[s]]
        for s in removed:
            if alive[s]:
                self.gone_sent += 1
            else:
                assert not unsent_left or s < min(unsent_left), f"unsent seq {s} dropped before older ones"
                self.dropped += 1
            del alive[s]
        newly = self.dropped - dropped_before
        # A drop is reported by one store.dropped_readings event, written by the store itself.
        new_events = self.store.conn.execute(
            "SELECT seq, kind, data FROM events WHERE seq > ? ORDER BY seq", (self.last["events"],)
        ).fetchall()
        if newly:
            event("the cap dropped unsent readings")
            [(seq, kind, data)] = new_events
            assert kind == "store.dropped_readings" and json.loads(data)["count"] == newly
            assert json.loads(data)["total_dropped"] == self.dropped
            self.last["events"] = seq
            self.sent["events"][seq] = False
        else:
            assert new_events == []

    @invariant()
    def store_matches_the_model(self) -> None:
        conn = self.store.conn
        for stream in ("readings", "events", "cycles"):
            rows = dict(conn.execute(f"SELECT seq, sent FROM {stream}").fetchall())
            model = self.sent[stream]
            assert {s: bool(v) for s, v in rows.items()} == model, f"{stream}: the store and the model differ"
            assert self.store.last_seq[stream] == self.last[stream]
            next_seq = conn.execute("SELECT value FROM meta WHERE key=?", (f"next_seq.{stream}",)).fetchone()[0]
            assert next_seq == self.last[stream] + 1, "a seq could be handed out twice"
        dropped = conn.execute("SELECT value FROM meta WHERE key='dropped_readings'").fetchone()[0]
        assert dropped == self.dropped
        unsent = sorted(s for s, v in self.sent["readings"].items() if not v)
        assert self.store.unsent.readings(limit=10**6).seq.tolist() == unsent
        assert [e["seq"] for e in self.store.unsent.events(limit=10**6)] == sorted(
            s for s, v in self.sent["events"].items() if not v
        )


StoreModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
test_store_against_its_model = StoreModel.TestCase
