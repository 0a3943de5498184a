"""SQLite store-and-forward (see ``store.Store``) and its schema migrations."""

from agent.store.schema import SCHEMA_VERSION
from agent.store.store import ReadingRows, Store, StoreFull

__all__ = ["SCHEMA_VERSION", "ReadingRows", "Store", "StoreFull"]
