"""SQLite store-and-forward (``store.Store``, assembled from writer, cursor, acker, capacity and stats parts),
its schema migrations, and the thread it runs on (``worker.StoreWorker``)."""

from agent.store.capacity import StoreFull
from agent.store.cursor import ReadingRows
from agent.store.db import StoreUnavailable
from agent.store.schema import SCHEMA_VERSION
from agent.store.store import OpenPolicy, Store

__all__ = ["SCHEMA_VERSION", "OpenPolicy", "ReadingRows", "Store", "StoreFull", "StoreUnavailable"]
