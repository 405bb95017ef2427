"""SQLite results store of a comparison: ``DIR/results.sqlite``, one row per finished cell.

Crash safety: WAL journal, one transaction per finished cell, and ``cell_id`` is the
PRIMARY KEY with ``INSERT ... ON CONFLICT DO NOTHING``: a process killed at any moment
(even SIGKILL) loses at most the cell in flight, never leaves a half-written row, and a
rerun never duplicates one. The ``meta`` table holds the comparison's config hash; a
directory holding another config's database is refused unless ``extend=True``.

Every metric of ``result.json`` is kept: the whole result dict in ``result_json`` (so
keys added later by new methods survive), and the common scalars in their own columns
for SQL queries. A metric a run does not report is NULL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..registry import PrunekitError
from .plan import Cell

#: 2: the int8 columns (``INT8_COLUMNS``, ``int8``); a version-1 database gains them when
#: a comparison opens it (``ALTER TABLE ... ADD COLUMN``, NULL for its old rows).
SCHEMA_VERSION = "2"
DB_NAME = "results.sqlite"

#: Scalar metrics of result.json promoted to columns (missing -> NULL).
METRIC_COLUMNS = (
    "accuracy",
    "accuracy_dense",
    "val_accuracy",
    "achieved_sparsity",
    "params_total",
    "params_nonzero",
    "macs_dense",
    "macs_effective",
    "size_bytes",
    "size_bytes_gzip",
    "accuracy_corrupted_mean",
)
#: The int8 figures (``--int8``, result["int8"], prunekit.evaluation.int8) promoted to
#: columns: column -> key of result["int8"] (missing -> NULL).
INT8_COLUMNS = {
    "int8_accuracy": "accuracy_int8",
    "int8_agreement": "agreement_int8_vs_torch",
    "onnx_bytes_float": "bytes_float_onnx",
    "onnx_bytes_int8": "bytes_int8_onnx",
    "onnx_bytes_float_gzip": "bytes_float_onnx_gzip",
    "onnx_bytes_int8_gzip": "bytes_int8_onnx_gzip",
}
#: Structured metrics stored as JSON text.
JSON_COLUMNS = ("latency_ms", "accuracy_gaussian", "accuracy_saltpepper", "layers", "int8")
#: Columns added after version 1, with their SQL type (the migration adds them).
ADDED_COLUMNS = {**{c: "REAL" for c in INT8_COLUMNS}, "int8": "TEXT"}

_CREATE = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (hash TEXT PRIMARY KEY, yaml TEXT NOT NULL, path TEXT,
                                    added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS planned (cell_id TEXT NOT NULL, config_hash TEXT NOT NULL,
                                    PRIMARY KEY (cell_id, config_hash));
CREATE TABLE IF NOT EXISTS runs (
  cell_id TEXT PRIMARY KEY,
  config_hash TEXT NOT NULL,
  run_hash TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
  error TEXT,
  kind TEXT NOT NULL,
  method TEXT NOT NULL,
  base_method TEXT NOT NULL,
  model TEXT NOT NULL,
  dataset TEXT NOT NULL,
  granularity TEXT,
  scope TEXT,
  schedule TEXT,
  sparsity REAL NOT NULL,
  seed INTEGER NOT NULL,
  hyperparams TEXT NOT NULL,
  command TEXT NOT NULL,
  {", ".join(f"{c} REAL" for c in (*METRIC_COLUMNS, *INT8_COLUMNS))},
  {", ".join(f"{c} TEXT" for c in JSON_COLUMNS)},
  wall_seconds REAL,
  prunekit_version TEXT,
  torch_version TEXT,
  python_version TEXT,
  finished_at REAL NOT NULL,
  result_json TEXT
);
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed cell survives a power cut too, not only a killed process.
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class Store:
    """The results database of one comparison directory."""

    def __init__(
        self,
        out: str | Path,
        config_hash: str,
        config_yaml: str,
        *,
        config_path: str | None = None,
        extend: bool = False,
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / DB_NAME
        self.config_hash = config_hash
        self._lock = DirLock(self.out)  # a second compare on this directory stops here
        try:
            self.conn = connect(self.path)
            with self._tx():
                for stmt in filter(str.strip, _CREATE.split(";")):
                    self.conn.execute(stmt)
                self._migrate()
        except sqlite3.DatabaseError as e:
            self._lock.release()
            raise PrunekitError(
                f"{self.path} is not a prunekit results database ({e}); "
                "move it away or choose another --out"
            ) from None
        except BaseException:
            self._lock.release()
            raise
        try:
            self._claim(config_yaml, config_path, extend)
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        """Bring a database written by an older prunekit to this schema: the columns
        added since (NULL in its rows; their figures stay in ``result_json`` if any).
        Idempotent; inside the opening transaction."""
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
        for column, sql_type in ADDED_COLUMNS.items():
            if column not in have:
                self.conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}")
        self.conn.execute(
            "UPDATE meta SET value=? WHERE key='schema' AND CAST(value AS INTEGER) < ?",
            (SCHEMA_VERSION, int(SCHEMA_VERSION)),
        )

    def _claim(self, config_yaml: str, config_path: str | None, extend: bool) -> None:
        with self._tx():
            row = self.conn.execute("SELECT value FROM meta WHERE key='config_hash'").fetchone()
            known = {r[0] for r in self.conn.execute("SELECT hash FROM configs")}
            if row is None:
                self.conn.execute(
                    "INSERT INTO meta VALUES ('config_hash', ?), ('schema', ?)",
                    (self.config_hash, SCHEMA_VERSION),
                )
            elif self.config_hash not in known and not extend:
                raise PrunekitError(
                    f"{self.path} holds the results of a different comparison config "
                    f"({row[0]}, this one is {self.config_hash}); choose another --out or "
                    "pass --extend to add this config's cells to it"
                )
            self.conn.execute(
                "INSERT OR IGNORE INTO configs VALUES (?, ?, ?, ?)",
                (self.config_hash, config_yaml, config_path, time.time()),
            )

    def check_data(self, key: str, fingerprint: str) -> None:
        """Record the fingerprint of the data behind ``key`` (dataset and limits, not
        where the files live), or refuse data that differs from what earlier cells of
        this directory were computed on: one table never mixes two datasets."""
        meta_key = f"data:{key}"
        with self._tx():
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (meta_key,)).fetchone()
            if row is None:
                self.conn.execute("INSERT INTO meta VALUES (?, ?)", (meta_key, fingerprint))
                return
        if row[0] != fingerprint:
            raise PrunekitError(
                f"{self.out} holds results computed on other data (fingerprint {row[0]}, "
                f"this data is {fingerprint}); use the same data or another --out"
            )

    def plan_cells(self, cell_ids: list[str]) -> None:
        """Record the cells this config plans (a partial report says N of M planned)."""
        with self._tx():
            self.conn.executemany(
                "INSERT OR IGNORE INTO planned VALUES (?, ?)",
                [(cid, self.config_hash) for cid in cell_ids],
            )

    def finished(self) -> dict[str, str]:
        """cell_id -> status of every recorded cell."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT cell_id, status FROM runs")}

    def forget_failed(self, cell_ids: list[str]) -> int:
        """Delete the failed rows of these cells (so they run again); returns how many."""
        with self._tx():
            n = 0
            for cid in cell_ids:
                n += self.conn.execute(
                    "DELETE FROM runs WHERE cell_id=? AND status='failed'", (cid,)
                ).rowcount
        return n

    def record(
        self,
        cell: Cell,
        *,
        command: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        wall_seconds: float | None = None,
    ) -> bool:
        """Insert the row of a finished cell in one transaction; False if it existed."""
        r = cell.run
        result = result or {}
        versions = result.get("versions") or {}
        hyper = {
            k: v
            for k, v in r.to_dict().items()
            if k not in ("model", "dataset", "method", "sparsity", "seed", "data_dir")
        }
        row: dict[str, Any] = {
            "cell_id": cell.id,
            "config_hash": self.config_hash,
            "run_hash": r.hash(),
            "status": "failed" if error is not None else "ok",
            "error": error,
            "kind": cell.kind,
            "method": cell.label,
            "base_method": cell.label if cell.kind == "peer" else r.method,
            "model": r.model,
            "dataset": r.dataset,
            "granularity": result.get("granularity", r.granularity),
            "scope": result.get("scope", r.scope),
            "schedule": result.get("schedule", r.schedule),
            "sparsity": r.sparsity,
            "seed": r.seed,
            "hyperparams": json.dumps(hyper, sort_keys=True),
            "command": command,
            "wall_seconds": wall_seconds,
            "prunekit_version": versions.get("prunekit"),
            "torch_version": versions.get("torch"),
            "python_version": versions.get("python"),
            "finished_at": time.time(),
            "result_json": json.dumps(result, default=str) if result else None,
        }
        for c in METRIC_COLUMNS:
            row[c] = result.get(c)
        int8 = result.get("int8") or {}
        for c, key in INT8_COLUMNS.items():
            row[c] = int8.get(key)
        for c in JSON_COLUMNS:
            row[c] = json.dumps(result[c]) if result.get(c) is not None else None
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._tx():
            cur = self.conn.execute(
                f"INSERT INTO runs ({cols}) VALUES ({marks}) ON CONFLICT(cell_id) DO NOTHING",
                tuple(row.values()),
            )
        return cur.rowcount == 1

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self._lock.release()


LOCK_NAME = ".compare.lock"


class DirLock:
    """An exclusive ``flock`` on ``DIR/.compare.lock`` for as long as a comparison runs.

    The kernel drops the lock when its process dies (even by SIGKILL), so a crash never
    leaves a stale lock; the file keeps the holder's pid, host and start time so the
    refusal can name it."""

    def __init__(self, out: Path) -> None:
        import fcntl
        import os
        import socket

        self.path = Path(out) / LOCK_NAME
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder()
            os.close(self.fd)
            self.fd = None
            raise PrunekitError(
                f"{out} is in use by another prunekit compare ({holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self) -> None:
        import os

        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def read_rows(out: str | Path) -> list[dict[str, Any]]:
    """Every row of ``DIR/results.sqlite`` as a dict: columns, with the JSON columns and
    every key of the stored result merged in (a key missing for a run is None)."""
    path = Path(out) / DB_NAME
    if not path.is_file():
        raise PrunekitError(f"{path} not found: run `prunekit compare --out {out}` first")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = []
        for r in conn.execute("SELECT * FROM runs ORDER BY model, seed, kind, method, sparsity"):
            d = dict(r)
            result = json.loads(d.pop("result_json") or "{}")
            for k, v in result.items():
                if k not in d and k != "config":
                    d[k] = v
            for c in JSON_COLUMNS:  # a column an older database lacks reads as None
                d[c] = json.loads(d[c]) if d.get(c) is not None else result.get(c)
            d["hyperparams"] = json.loads(d["hyperparams"])
            rows.append(d)
        return rows
    except sqlite3.DatabaseError as e:
        raise PrunekitError(f"{path} is not a prunekit results database: {e}") from None
    finally:
        conn.close()


def read_configs(out: str | Path) -> list[tuple[str, str, str | None]]:
    """(hash, YAML, config path or None for the packaged default) of every config that
    wrote into this database, oldest first."""
    conn = sqlite3.connect(f"file:{Path(out) / DB_NAME}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT hash, yaml, path FROM configs ORDER BY added"))
    finally:
        conn.close()


def planned_cells(out: str | Path) -> set[str] | None:
    """The cell ids planned by every config that wrote into this database; None for a
    database written before plans were recorded."""
    conn = sqlite3.connect(f"file:{Path(out) / DB_NAME}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT cell_id FROM planned")} or None
    except sqlite3.OperationalError:  # no 'planned' table: an older database
        return None
    finally:
        conn.close()
