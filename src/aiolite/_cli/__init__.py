"""The ``aiolite`` command: doctor, backup, migrate, checkpoint, node, bench.

Built on aiolite's public API only, with the standard library (argparse; a plain progress
line on terminals): nothing here justified a dependency.  Human-readable output by
default, ``--json`` for scripts.

Exit codes: 0 ok; 1 the command ran and found problems (doctor) or failed (a migration
step, a locked database); 2 bad usage, or the database cannot be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sqlite3
import sys
import threading
from dataclasses import asdict
from typing import Any, Callable, Optional

import aiolite

from ._doctor import diagnose, litestream_marks

__all__ = ["main"]

OK, PROBLEMS, USAGE = 0, 1, 2


class _Failure(Exception):
    """An error to print as one line and exit with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _existing(path: str) -> str:
    if not os.path.exists(path):
        raise _Failure(f"no database at {path!r}", USAGE)
    if not os.path.isfile(path):
        raise _Failure(f"{path!r} is not a file: name the database file", USAGE)
    if not os.access(path, os.R_OK):
        raise _Failure(f"{path!r} cannot be read: check its permissions", USAGE)
    return path


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


# ---- commands ----------------------------------------------------------------------------


async def cmd_doctor(args: argparse.Namespace) -> int:
    report = await diagnose(_existing(args.database))
    lines = [f"{report['path']}"]
    for key, value in report["facts"].items():
        lines.append(f"  {key:<22} {value}")
    problems = report["problems"]
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        for p in problems:
            lines.append(f"  ✗ {p['problem']}\n      fix: {p['fix']}")
    else:
        lines.append("✓ no problems found")
    _emit(args, report, "\n".join(lines))
    return PROBLEMS if problems else OK


async def cmd_backup(args: argparse.Namespace) -> int:
    # A dqlite cluster is copied from a dump of its leader (see docs/scale-out.md).
    source = args.source if args.source.startswith("dqlite://") else _existing(args.source)
    show = not args.json and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show:
            width = 30
            filled = width * done // max(total, 1)
            bar = "#" * filled + "." * (width - filled)
            print(f"\r  [{bar}] {done}/{total} pages", end="", file=sys.stderr, flush=True)

    async with _inspect(source) as db:
        try:
            pages = await db.backup(
                args.dest, pages=args.pages, progress=progress, overwrite=args.force
            )
        except FileExistsError:
            raise _Failure(f"{args.dest!r} exists; pass --force to overwrite it", USAGE) from None
        except ValueError as exc:
            raise _Failure(str(exc), USAGE) from None
    if show:
        print(file=sys.stderr)
    problems = await _quick_check(args.dest)
    data = {"source": source, "dest": args.dest, "pages": pages, "integrity": problems or "ok"}
    text = f"backed up {source} -> {args.dest}: {pages} pages, integrity " + (
        "ok" if not problems else "FAILED: " + "; ".join(problems)
    )
    _emit(args, data, text)
    return PROBLEMS if problems else OK


async def cmd_migrate(args: argparse.Namespace) -> int:
    async with aiolite.open(args.database, readers=1) as db:
        try:
            steps = await db.migrate(args.directory, dry_run=args.dry_run)
        except aiolite.MigrationError as exc:
            raise _Failure(str(exc), PROBLEMS) from None
        except sqlite3.Error as exc:
            raise _Failure(
                f"a migration step failed and was rolled back: {exc}", PROBLEMS
            ) from None
        current = (await db.health()).schema_version
    verb = "would apply" if args.dry_run else "applied"
    names = [f"  {m.version:04d} {m.name}" for m in steps]
    text = "\n".join([f"{verb} {len(steps)} step(s)" + (":" if steps else ""), *names])
    text += f"\nschema version: {current if current is not None else 'none'}"
    data = {"dry_run": args.dry_run, "steps": [asdict(m) for m in steps], "version": current}
    _emit(args, data, text)
    return OK


async def cmd_checkpoint(args: argparse.Namespace) -> int:
    marks = litestream_marks(_existing(args.database))
    if not marks:
        async with _inspect(args.database) as db:
            tables = await db.fetchall("SELECT name FROM sqlite_master", row_factory=tuple)
        marks = litestream_marks(args.database, [t for (t,) in tables])
    if marks:
        raise _Failure(
            f"Litestream replicates {args.database} ({', '.join(marks)}) and owns its "
            "checkpoints: it keeps a read transaction open, so a checkpoint from here cannot "
            "reset the WAL, and it checkpoints after copying the WAL itself. Leave it to "
            "Litestream (see docs/replication.md)",
            PROBLEMS,
        )
    async with _open(args.database) as db:
        if db.journal_mode != "wal":
            raise _Failure(f"journal_mode is {db.journal_mode}: only WAL has checkpoints", PROBLEMS)
        before = (await db.health()).wal_bytes
        result = await db.checkpoint(args.mode)
        after = (await db.health()).wal_bytes
    data = {**asdict(result), "mode": args.mode.upper(), "wal_bytes_before": before,
            "wal_bytes_after": after}  # fmt: skip
    text = (
        f"{args.mode.upper()} checkpoint: {result.checkpointed_frames}/{result.log_frames} "
        f"WAL frames copied, WAL {_size(before)} -> {_size(after)}"
        + (
            " (busy: a reader, maybe in another process, still uses the WAL; run it again "
            "when that reader is done)"
            if result.busy
            else ""
        )
    )
    _emit(args, data, text)
    return PROBLEMS if result.busy else OK


def cmd_bench(args: argparse.Namespace) -> int:
    if os.path.isdir("benchmarks") and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the console script does not look in the cwd
    try:  # not part of the package: found when run from a checkout of the repository
        core_bench = importlib.import_module("benchmarks.run")
        db_bench = importlib.import_module("benchmarks.database")
    except ImportError:
        raise _Failure(
            "aiolite bench runs the benchmarks/ folder of the aiolite repository: run it "
            "from a checkout (git clone, then 'make bench' or 'aiolite bench')",
            USAGE,
        ) from None
    extra = ["--quick"] if args.quick else []
    if args.json:
        print("note: bench prints markdown tables; --json is ignored", file=sys.stderr)
    code = int(core_bench.main([*extra, "--rounds", str(args.rounds)]))
    return code or int(db_bench.main([*extra, "--rounds", str(args.rounds)]))


def cmd_node(args: argparse.Namespace) -> int:
    """Run a dqlite node in the foreground until SIGTERM or SIGINT."""
    join = [a.strip() for a in (args.join or "").split(",") if a.strip()]
    try:
        node = aiolite.Node(args.bind, args.dir, join=join, latency_ms=args.latency_ms)
    except ValueError as exc:
        raise _Failure(str(exc), USAGE) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    node.start()
    try:
        data = {
            "id": node.id,
            "address": node.address,
            "data_dir": node.data_dir,
            "pid": os.getpid(),
        }
        _emit(args, data, f"node {node.id} serving at {node.address} (data in {node.data_dir})")
        sys.stdout.flush()
        stop.wait()
    finally:
        node.stop()
    return OK


# ---- plumbing ----------------------------------------------------------------------------


def _open(path: str) -> aiolite.Database:
    # For commands that write (checkpoint): keep the journal mode, skip ANALYZE.
    return aiolite.open(path, readers=1, pragmas={"journal_mode": None}, optimize=False)


def _inspect(path: str) -> aiolite.Database:
    # For commands that only read: read-only, so the file (and its WAL) stay as they are.
    return aiolite.open(path, readers=1, readonly=True)


async def _quick_check(path: str) -> list[str]:
    async with _inspect(path) as db:
        return await db.integrity_check(quick=True)


def _size(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiolite",
        description="Operate SQLite databases: health report, online backup, migrations, "
        "WAL checkpoints, dqlite cluster nodes, benchmark.",
        epilog="Exit codes: 0 ok, 1 problems found or the operation failed, 2 bad usage or "
        "no such database.",
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"aiolite {aiolite.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, fn: Callable[..., Any], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    p = command("doctor", cmd_doctor, "report on a database and explain how to fix each problem")
    p.add_argument("database", help="the SQLite file")
    p = command("backup", cmd_backup, "copy a live database safely (SQLite's online backup)")
    p.add_argument("source", help="the database to copy (a file, or a dqlite:// URL)")
    p.add_argument("dest", help="the new file")
    p.add_argument("--pages", type=int, default=1024, help="pages per step (default 1024)")
    p.add_argument("--force", action="store_true", help="overwrite dest if it exists")
    p = command("migrate", cmd_migrate, "apply NNNN_description.sql files in order")
    p.add_argument("database", help="the SQLite file (created if missing), or a dqlite:// URL")
    p.add_argument("directory", help="the folder of migration files")
    p.add_argument("--dry-run", action="store_true", help="list what would run, change nothing")
    p = command("checkpoint", cmd_checkpoint, "copy the WAL back into the database file")
    p.add_argument("database", help="the SQLite file")
    p.add_argument(
        "--mode",
        default="TRUNCATE",
        type=str.upper,
        choices=["PASSIVE", "FULL", "RESTART", "TRUNCATE"],
        help="TRUNCATE (default) also empties the WAL file",
    )
    p = command("node", cmd_node, "run a dqlite cluster node (needs libdqlite0)")
    p.add_argument("--bind", required=True, metavar="HOST:PORT", help="address to serve at")
    p.add_argument("--dir", required=True, help="the node's data directory")
    p.add_argument(
        "--join", metavar="ADDR[,ADDR...]", help="running nodes to join (first start only)"
    )
    p.add_argument(
        "--latency-ms",
        type=int,
        default=None,
        help="network latency to tune Raft's timeouts for (election timeout = 15x); "
        "default: dqlite's (3 s election timeout)",
    )
    p = command("bench", cmd_bench, "benchmark aiolite against aiosqlite and sqlite3")
    p.add_argument("--quick", action="store_true", help="a small, fast run")
    p.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE
    try:
        result = args.fn(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except _Failure as exc:
        print(f"aiolite {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except sqlite3.DatabaseError as exc:
        print(f"aiolite {args.command}: {exc}", file=sys.stderr)
        return USAGE if "not a database" in str(exc) else PROBLEMS
    except KeyboardInterrupt:
        return 130
