#!/usr/bin/env python3
"""A worker that serves a MonoRail ``backend`` resource from SQLite.

Each resource the server asks about is a table of the database with an
``id`` primary key and a ``data`` column holding the item as JSON. The
server hands the sessions' ``query``, ``all``, ``get`` and ``watch``
requests to a ready worker; this one answers them from the table:

- ``all``: every item (``list``);
- ``query`` / ``watch``: the items whose properties equal every param
  (``list``);
- ``get``: the item whose id is ``params.id`` (``item``), or ``remove``.

``put`` and ``delete`` write the table and tell the server (``PI`` /
``RI``), so watchers on every node get the change.

    python3 monorail_sqlite_worker.py --endpoint tcp://127.0.0.1:8081 \\
        --vhost /mr --token <40 hex> --database items.db
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webrocket_backend import Worker  # noqa: E402


class SqliteResources:
    """Items of resources in one SQLite file (one table per resource).
    Safe to use from several threads (one connection, one lock)."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.lock = threading.Lock()

    def _table(self, resource: str) -> str:
        if not resource.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"bad resource name {resource!r}")
        table = '"r_' + resource + '"'
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        return table

    def put(self, resource: str, item: dict) -> None:
        with self.lock, self.db:
            table = self._table(resource)
            self.db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", (str(item["id"]), json.dumps(item)))

    def delete(self, resource: str, item_id: Any) -> None:
        with self.lock, self.db:
            self.db.execute(f"DELETE FROM {self._table(resource)} WHERE id = ?", (str(item_id),))

    def items(self, resource: str) -> list:
        with self.lock:
            rows = self.db.execute(f"SELECT data FROM {self._table(resource)} ORDER BY id").fetchall()
        return [json.loads(data) for (data,) in rows]

    def get(self, resource: str, item_id: Any) -> dict | None:
        with self.lock:
            row = self.db.execute(
                f"SELECT data FROM {self._table(resource)} WHERE id = ?", (str(item_id),)
            ).fetchone()
        return json.loads(row[0]) if row else None


def answer(store: SqliteResources, request: dict) -> dict:
    """The message for the session that made ``request``."""
    resource = request["resource"]
    params = request.get("params") or {}
    handler = request["handler"]
    if handler == "get":
        if "id" not in params:
            return {"handler": "error", "error": {"id": "INVALID_PAYLOAD", "code": 400,
                                                  "message": "params must name the item's id"}}
        item = store.get(resource, params["id"])
        return {"handler": "item", "data": item} if item is not None else {"handler": "remove", "params": params}
    items = store.items(resource)
    if handler in ("query", "watch"):
        items = [i for i in items if all(i.get(k) == v for k, v in params.items())]
    return {"handler": "list", "items": items}


class SqliteWorker:
    """A worker answering from ``store``; ``put`` / ``delete`` change an
    item and notify the watchers."""

    def __init__(self, endpoint: str, vhost: str, token: str, database: str, **options):
        self.store = SqliteResources(database)
        self.worker = Worker(endpoint, vhost, token, **options)
        self.worker.on_resource(lambda request: answer(self.store, request))
        self._notify = None

    def start(self) -> "SqliteWorker":
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()

    def _client(self):
        # The worker's own client belongs to its thread; writes get theirs.
        from webrocket_backend import Client

        if self._notify is None:
            self._notify = Client(self.worker.endpoint, self.worker.vhost, self.worker.token,
                                  context=self.worker.context)
        return self._notify

    def put(self, resource: str, item: dict) -> None:
        self.store.put(resource, item)
        self._client().put_item(resource, item)

    def delete(self, resource: str, item_id: Any) -> None:
        self.store.delete(resource, item_id)
        self._client().remove_item(resource, item_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:8081")
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--token", default=os.environ.get("WEBROCKET_TOKEN"))
    parser.add_argument("--database", default="items.db")
    args = parser.parse_args()
    if not args.token:
        parser.error("--token or WEBROCKET_TOKEN is required")
    logging.basicConfig(level=logging.INFO)
    worker = SqliteWorker(args.endpoint, args.vhost, args.token, args.database)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    worker.start()
    done.wait()
    worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
