"""The engine's SQLite store: one connection, WAL, numbered migrations."""

from monitor.store.db import DeadLetter, DeviceRow, Store

__all__ = ["DeadLetter", "DeviceRow", "Store"]
