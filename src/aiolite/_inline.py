"""Adaptive execution: which calls may run on the caller's thread instead of the worker's.

A thread round trip costs 20-50 µs; a point query costs 3-5 µs.  So a statement that is
*known* to be short runs directly on the event loop's thread, on the connection the worker
owns, while the worker is idle and nothing is queued ahead of it (``Worker.run_here``):
the order of operations on a connection never changes.  Everything else goes to the
worker as before (cancellation that interrupts, batching).

What "known short" means, learned per SQL text:

* **history**: its runs here have averaged under ``SHORT`` (a statement that did not is
  sent to the worker, and tried here again now and then: ``hist`` decays at each refusal).
  Times measured on the worker are not used: there the loop thread competes for the GIL
  and a 15 µs statement can measure 130 µs;
* **kind**, learned once on the worker after the first run (see ``_classify``): a read
  (by its first keyword), a *bounded* write (SQLite's query plan only searches by key or
  index, no trigger in the schema, no foreign-key action: its cost does not grow with
  the data), or anything else;
* **no user code**: a statement naming a function, aggregate or collation registered on
  the connection stays on the worker; so does every statement while the user has an
  authorizer or a trace callback set (the query plan asked for would show in them).

Where a lock could make SQLite wait, the call goes to the worker: SQLite's busy handler
sleeps, and it must never sleep on the loop.  So reads run here only on databases where
readers take no lock (WAL, or in-memory) or inside a transaction that holds the write lock;
writes only inside a transaction that already holds the write lock (a write earlier in it,
or ``BEGIN IMMEDIATE``); a COMMIT only when it cannot fsync (WAL with synchronous=NORMAL
or OFF) nor run SQLite's automatic checkpoint: the WAL file is too small for that (its
size bounds its frame count from above), or, for a Database's writer, the writer runs
the automatic checkpoints itself, after commits (Session.take_checkpoints).

The budget: a read running here is aborted by the worker's progress handler once it has
run ``budget`` seconds (checked every INLINE_STEPS VM instructions, ~70 µs), and is run
again on the worker; the caller sees only the result.  Writes are never aborted: SQLite
rolls back the *whole* transaction when it interrupts a write, so only bounded writes
with a short history run here.
"""

from __future__ import annotations

import os
import re
import sqlite3
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = [
    "BUDGET",
    "DML",
    "KEYWORD",
    "NO",
    "NOWAIT",
    "RUN",
    "How",
    "MANY",
    "SCRIPT",
    "SHORT",
    "YIELD_EVERY",
    "Inline",
    "budget_of",
]

#: A statement whose moving average run time is under this may run on the loop thread.
SHORT = 100e-6
#: Each refusal for a slow history takes this factor off it: a statement that became fast
#: again is tried here again after a few dozen calls.
DECAY = 0.95
#: A history whose average falls under this is dropped: most statements have one only
#: for their first run (it prepares the statement), and recording every run costs ~5% of
#: a short INSERT's time on the loop thread.
FORGET = 10e-6
#: A run on the loop thread shorter than this leaves the statement's history alone,
#: unless it has one and is not remembered (most statements never get one); and a
#: statement with a history under it is still remembered (Worker.fast): the hot paths
#: record only runs this long or more, so such a history holds until one raises it.
#: (Remembering only statements with no history left a 12 µs read, a Database's run
#: included, on the long path for good.)
SHORT_HERE = 50e-6
#: The most one run counts for in a history (see Inline.record).
OUTLIER = 2 * SHORT
#: Default hard limit of one read run on the loop thread before it moves to the worker.
BUDGET = 1e-3
#: Calls run on the loop thread for at most this long per loop iteration (all tasks
#: together) before the next gives the loop a turn.  The loop's lag is about this plus the
#: turns of the other ready tasks: at 1 ms, 100 busy tasks lagged it 2.5-3.0 ms (p99), at
#: 0.5 ms 1.8-2.1 ms, for about 5% of their throughput; one task, 1.2-2.1 ms against 0.9.
YIELD_EVERY = 5e-4
#: How a call may run here, as ``admit()`` says: None (on the worker), or a
#: ``(budget, nowait, kind)`` triple: ``budget`` seconds before SQLite aborts it and it
#: moves to the worker (0: never aborted); ``nowait``: SQLite's busy timeout is 0
#: meanwhile, so a database another connection writes to fails at once and the call moves
#: to the worker (which waits as configured); ``kind``: the statement's (see below), so
#: that the call need not look it up again.  Only reads, and nowait calls, have a budget:
#: Worker.run_here counts on it (a call with a budget and no nowait is a read).
How = Optional[tuple[float, bool, int]]
NO: How = None
#: Statements classified per connection at most; then the table starts over.
MAX_KINDS = 2048

# Kinds of statement.
NEVER, READ, WRITE, BIG_WRITE, BEGIN, LOCK, COMMIT = range(7)
# A write that cannot wait: no budget (never aborted).
RUN: tuple[float, bool, int] = (0.0, False, WRITE)
NOWAIT: How = (0.0, True, WRITE)
_RUN_BEGIN: How = (0.0, False, BEGIN)
_RUN_COMMIT: How = (0.0, False, COMMIT)
# What the connection's open transaction holds: nothing known to be written (or no
# transaction), the write lock, or something we cannot tell (a script, a PRAGMA...).
CLEAN, LOCKED, UNKNOWN = range(3)

#: The first keyword of a statement, after white space and comments.
KEYWORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*([A-Za-z]+)", re.DOTALL)
_DEFERRED = re.compile(r"\s*BEGIN(?:\s+DEFERRED)?(?:\s+TRANSACTION)?\s*;?\s*", re.IGNORECASE)
DML = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})  # sqlite3's implicit BEGIN
_READS = frozenset({"SELECT", "VALUES", "WITH"})
_PLANNED = frozenset({"SELECT", "VALUES", "WITH", "INSERT", "REPLACE", "UPDATE", "DELETE"})
# Statements after which what we learned may be wrong: the schema, the attached databases
# or the settings (PRAGMA x=...) changed.
_RESETS = frozenset({"CREATE", "DROP", "ALTER", "ATTACH", "DETACH"})
_SCRIPT = object()  # Job.stmt params of executescript
_MANY = object()  # and of executemany


def budget_of(inline: Any) -> Optional[float]:
    """The budget in seconds for ``inline=`` (True: the default; False: off -> None)."""
    if inline is True:
        return BUDGET
    if inline is False or inline is None:
        return None
    if isinstance(inline, (int, float)) and not isinstance(inline, bool) and inline > 0:
        return float(inline)
    raise ValueError(f"inline must be True, False or a budget in seconds (> 0), got {inline!r}")


def keyword(sql: str) -> str:
    m = KEYWORD.match(sql)
    return m.group(1).upper() if m is not None else ""


class _Facts:
    """What the connection's databases allow, read on the worker (see Inline.facts)."""

    __slots__ = (
        "autocheckpoint",
        "busy_timeout",
        "commit_free",
        "foreign_keys",
        "frame_size",
        "lock_free",
        "private",
        "triggers",
        "wal_path",
    )

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.lock_free = True  # readers take no lock: WAL or private (memory, temp)
        self.commit_free = True  # a COMMIT never fsyncs
        self.private = True  # no database is a file: no other connection can lock it
        self.wal_path = ""
        self.autocheckpoint = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        self.busy_timeout = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        # A WAL frame: a 24-byte header and one page.
        self.frame_size = int(conn.execute("PRAGMA page_size").fetchone()[0]) + 24
        self.foreign_keys = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
        self.triggers = False  # any trigger in any schema: every write may run more
        for _, name, file in conn.execute("PRAGMA database_list").fetchall():
            quoted = '"' + name.replace('"', '""') + '"'
            master = "sqlite_temp_master" if name == "temp" else f"{quoted}.sqlite_master"
            row = conn.execute(f"SELECT count(*) FROM {master} WHERE type = 'trigger'")
            self.triggers = self.triggers or bool(row.fetchone()[0])
            if not file:
                continue  # in-memory or temp: no other connection, no lock, no fsync
            self.private = False
            mode = str(conn.execute(f"PRAGMA {quoted}.journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                self.lock_free = self.commit_free = False
                continue
            if int(conn.execute(f"PRAGMA {quoted}.synchronous").fetchone()[0]) > 1:
                self.commit_free = False  # FULL/EXTRA: every commit fsyncs the WAL
            if name == "main":
                self.wal_path = file + "-wal"
            else:
                self.commit_free = False  # a commit across files: leave it to the worker

    def wal_frames_at_most(self) -> int:
        """An upper bound of the frames in the main database's WAL, from its size.

        SQLite's own count (mxFrame) lives in the -shm index, which must not be opened
        here: closing any descriptor of a file drops every POSIX lock this process holds
        on it, SQLite's included.  The file's size, read with stat(), is the most frames
        the WAL ever held since it was last truncated: a bound, never an underestimate.
        """
        try:
            return os.stat(self.wal_path).st_size // self.frame_size
        except OSError:
            return 0  # no WAL file: no frames


_WRITE_WORD = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def _calls_user_code(sql: str, names: set[str]) -> bool:
    """Whether ``sql`` names a function or collation registered on the connection (any
    word of it, strings included: a false alarm only keeps it on the worker)."""
    return bool(names) and any(w.lower() in names for w in _WORD.findall(sql))


def _reads(word: str, sql: str) -> bool:
    """Whether a statement starting with ``word`` only reads (a WITH that contains a write
    keyword counts as a write)."""
    return word in _READS and not (word == "WITH" and _WRITE_WORD.search(sql))


#: The longest SQL text classified on the loop thread (see Inline.read_here): preparing a
#: statement is not covered by the budget, and its time grows with the text.
READ_HERE_MAX = 2000


def _classify(
    conn: sqlite3.Connection, sql: str, params: Any, facts: _Facts, names: set[str]
) -> int:
    """A statement's kind (see Inline).

    Reads are told by their first keyword (a WITH that contains a write keyword counts as
    a write).  A write is *bounded* when SQLite's query plan searches (by key or index)
    and never scans, and nothing else runs with it: no trigger in the schema, and no
    foreign-key actions (an UPDATE or DELETE with foreign_keys on may scan child tables).

    ``EXPLAIN QUERY PLAN``, never the bytecode listing: SQLite 3.40's ``EXPLAIN`` crashed
    the process rendering an opcode's operand (sqlite3VdbeDisplayP4) on a statement of
    Tortoise ORM's migration tests.
    """
    word = keyword(sql)
    if word in ("COMMIT", "END"):
        return COMMIT
    if word == "BEGIN":
        return BEGIN if _DEFERRED.fullmatch(sql) else LOCK
    if word not in _PLANNED or _calls_user_code(sql, names):
        return NEVER
    if _reads(word, sql):
        return READ
    if facts.triggers or (facts.foreign_keys and word in ("UPDATE", "DELETE", "REPLACE")):
        return BIG_WRITE
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        bounded = all(_one_row(conn, str(row[-1])) for row in plan)
    except Exception:  # whatever SQLite or the parameters say: not here
        return NEVER
    return WRITE if bounded else BIG_WRITE


_BY_KEY = re.compile(r"SEARCH \S+ USING (?:INTEGER )?PRIMARY KEY \(([^)]*)\)$")
_BY_INDEX = re.compile(r"SEARCH (\S+) USING (?:COVERING )?INDEX (\S+) \(([^)]*)\)$")
_CONSTANT = re.compile(r"SCAN \d+ CONSTANT ROWS?$")  # an INSERT's VALUES list


def _equalities(terms: str) -> int:
    """How many ``col=?`` terms a plan's search constraint has (0 if any is a range)."""
    parts = [t.strip() for t in terms.split(" AND ")]
    if any("=" not in t or "<" in t or ">" in t for t in parts):
        return 0
    return len(parts)


def _one_row(conn: sqlite3.Connection, detail: str) -> bool:
    """Whether a query-plan step touches at most a few rows whatever the data: a search
    by the whole primary key or a whole unique index with equalities, or constant rows."""
    if _CONSTANT.match(detail):
        return True
    m = _BY_KEY.match(detail)
    if m is not None:
        return _equalities(m.group(1)) > 0
    m = _BY_INDEX.match(detail)
    if m is None:
        return False  # a scan, a virtual table, a subquery, anything else
    table, index, terms = m.groups()
    unique = conn.execute(
        'SELECT "unique" FROM pragma_index_list(?) WHERE name = ?', (table, index)
    ).fetchone()
    if not unique or not unique[0]:
        return False
    columns = conn.execute("SELECT count(*) FROM pragma_index_info(?)", (index,)).fetchone()
    return bool(columns) and _equalities(terms) == columns[0]


class Inline:
    """One connection's adaptive-execution state (``Worker.inline``).

    ``admit`` runs on the loop thread; ``after`` runs where the job ran, holding the
    connection (worker thread, or the loop thread inside ``Worker.run_here``).
    """

    def __init__(self, worker: Worker, budget: float) -> None:
        self.worker = worker
        self.budget = budget
        # A read: aborted after the budget.
        self.read: tuple[float, bool, int] = (budget, False, READ)
        #: A Database's autocommit write (BEGIN IMMEDIATE ... COMMIT in one job): aborting
        #: it loses nothing, its own transaction rolls back.
        self.own_write: How = (budget, True, NEVER)
        self.kinds: dict[Any, int] = {}  # by SQL text
        #: The statements admit() let run here as a read or a write that cannot wait, by
        #: SQL text, each with its budget (see Worker.fast): the hot path looks them up
        #: instead of asking admit() again.  Each holds while nothing it depends on
        #: changes; what changes any of it (the transaction's state, the facts, the
        #: kinds, hooks, a history) drops them.  A statement whose history reached
        #: SHORT_HERE is not remembered: its runs are recorded until it is under it again
        #: (the hot paths record a run only if it took SHORT_HERE or more).
        # The Worker's own dict, never rebound (a second name, not a copy): the Worker
        # empties it too (see Worker.fast).
        self.fast = worker.fast
        self.fast.clear()
        #: Moving average of each statement's runs here (seconds), for statements that
        #: ever took SHORT_HERE or more; a budget overrun counts as the budget.
        self.hist: dict[Any, float] = {}
        self.names: set[str] = set()  # user functions/collations, lower case
        #: Statements of no known kind sent to the worker, which learns it when it runs
        #: one: the same statement behind them waits for that (see short()).
        self.learning: set[Any] = set()
        #: An authorizer or trace callback is set: nothing is learned, nothing runs here.
        self.hooked = False
        self.facts: Optional[_Facts] = None
        self.state = CLEAN
        #: The connection's total_changes when it was last seen outside a transaction,
        #: and what scripts and executemany calls in this one add to the rows it changed
        #: since (they may write much more than they change: an index, a VACUUM):
        #: together, how much the transaction wrote (see commit_cheap).
        self.tx_base = 0
        self.tx_extra = 0
        #: sqlite3 opens a transaction before INSERT/UPDATE/DELETE/REPLACE by itself (its
        #: legacy transaction control with an isolation_level): kept by the Connection.
        self.implicit_begin = True
        #: Calls run on the loop thread; reads that overran the budget and moved.
        self.calls = 0
        self.moved = 0
        #: First writes tried here that found the database locked (then run on the worker).
        self.busy = 0

    # -- loop thread --

    def admit(self, sql: Any) -> How:
        """How the statement job keyed ``sql`` may run here (NO: on the worker).  A
        statement sent with a BEGIN that may wait has a key of its own (not its SQL):
        never admitted.  Nothing may be queued: a queued job may change what the decision
        rests on before the call gets the connection (and the call would wait for it)."""
        if self.hooked or self.worker._tickets:
            return NO
        kind = self.kinds.get(sql, NEVER)
        if kind == NEVER:
            return NO
        took = self.hist.get(sql)
        if took is not None and took >= SHORT:
            self.hist[sql] = took * DECAY
            return NO
        remember = (took is None or took < SHORT_HERE) and self.worker._probed
        facts = self.facts
        if facts is None or self.worker.lost_transaction:
            return NO
        # Remembered only once the worker may be used from this thread (it probed).
        if kind == READ:
            if facts.lock_free or self.state == LOCKED:
                if remember:
                    self.fast[sql] = self.read[0]
                return self.read
            return NO
        if kind == WRITE:
            if facts.private or (facts.lock_free and self.state == LOCKED):
                # Private: nobody else can hold a lock; a commit has nothing to sync.
                if remember:
                    self.fast[sql] = 0.0
                return RUN
            if not facts.lock_free:
                return NO
            # The first write of a transaction takes the write lock: here only if it can
            # without waiting, and only if a transaction stays open after it (no commit).
            conn = self.worker.connection
            if conn is not None and conn.in_transaction:
                return NOWAIT
            if self.implicit_begin and keyword(sql) in DML:
                return NOWAIT  # sqlite3 sends BEGIN first: the statement does not commit
            return NO
        if kind == BEGIN:
            return _RUN_BEGIN
        if kind == COMMIT:
            return _RUN_COMMIT if self.commit_cheap() else NO
        return NO

    # -- a Database's members (their jobs carry no kind: the Database says what it sends) --

    def admit_read(self, sql: str) -> How:
        """How a plain query of a Database may run here (readers are query_only)."""
        if self.slow(sql):
            return NO
        facts = self.facts
        if facts is None or not facts.lock_free or self._kind(sql) != READ:
            return NO
        if self.hist.get(sql, 0.0) < SHORT_HERE and self.worker._probed:
            self.fast[sql] = self.read[0]  # the Database's hot path (Database._here)
        return self.read

    def admit_own_write(self, sql: str) -> How:
        """How a Database's autocommit write may run here: BEGIN IMMEDIATE without
        waiting, the statement with the budget, a COMMIT that neither fsyncs nor
        checkpoints."""
        if self.slow(sql):
            return NO
        facts = self.facts
        if facts is None or not facts.lock_free or self._kind(sql) != WRITE:
            return NO
        if not facts.private and not self._commit_room(facts, 1):
            return NO
        return self.own_write

    def read_here(self, sql: str) -> bool:
        """Loop thread: learn that a statement never run before is a read, without sending
        it to the worker to learn it (whose first run, with many tasks starting on the same
        statement, had all of them wait for one round trip: ~1.5 ms of 100 tasks' 17).

        A read's kind is its first keyword (no query plan: a read run here is aborted at
        its budget anyway); only one statement (no ``;``: a script never passes for one)
        of bounded length, naming no user code.  The caller says nothing is queued."""
        if (
            self.facts is None
            or self.hooked
            or len(sql) > READ_HERE_MAX
            or ";" in sql
            or not _reads(keyword(sql), sql)
            or _calls_user_code(sql, self.names)
        ):
            return False
        self._set_kind(sql, READ)
        return True

    def _set_kind(self, sql: str, kind: int) -> None:
        """Remember a statement's kind; a full table starts over (and so does fast,
        whose entries rest on the kinds)."""
        kinds = self.kinds
        if len(kinds) >= MAX_KINDS:
            kinds.clear()
            self.fast.clear()
        kinds[sql] = kind

    def record(self, key: Any, took: float) -> None:
        """Add a run here to the statement's history.  From 0: one slow run (a first
        one, that prepares the statement) counts as one sample, not as the whole.

        A sample counts for at most OUTLIER: a run measured slow because the thread was
        descheduled, or waited for the GIL while SQLite had let go of it, does not send a
        short statement to the worker by itself (and, with many tasks, start a convoy of
        calls that all cross threads); three slow runs in a row do.  A read that runs
        over its budget moves at once (``overran``)."""
        hist = self.hist
        if len(hist) >= MAX_KINDS and key not in hist:
            hist.clear()
        took = hist.get(key, 0.0) * 0.75 + min(took, OUTLIER) * 0.25
        if took < FORGET:
            # Short again: no history, so its runs are not even recorded (run_here records
            # only a statement with a history, or a run of SHORT_HERE or more), and
            # admit() remembers it again.
            hist.pop(key, None)
        else:
            hist[key] = took
            if took >= SHORT_HERE:
                self.fast.pop(key, None)  # its runs are recorded until it is short again

    def overran(self, key: Any, took: float) -> None:
        """A read run here went over its budget (``took`` seconds): not here for a while."""
        self.hist[key] = took
        self.fast.pop(key, None)
        self.moved += 1

    def set_hooked(self, hooked: bool) -> None:
        """An authorizer or trace callback is set (True) or none is any more."""
        self.hooked = hooked
        self.fast.clear()

    def short(self, sql: Any) -> bool:
        """Whether the statement is of a kind that may run here and its history is short,
        or of no known kind yet but a run of it is queued (which learns it): worth
        waiting for the jobs queued ahead rather than queuing behind them (see
        Waker.behind; ``admit`` decides once they have run).  No side effect."""
        kind = self.kinds.get(sql)
        if kind is None:  # a run queued ahead will tell
            return sql in self.learning and not self.hooked
        return kind in (READ, WRITE) and not self.hooked and self.hist.get(sql, 0.0) < SHORT

    def learn(self, sql: Any) -> None:
        """Loop thread: a statement of no known kind goes to the worker (see short())."""
        learning = self.learning
        if len(learning) >= MAX_KINDS:
            learning.clear()
        learning.add(sql)

    def slow(self, sql: str) -> bool:
        """Whether its history (or hooks) keep this statement off the loop thread now."""
        if self.hooked:
            return True
        took = self.hist.get(sql)
        if took is not None and took >= SHORT:
            self.hist[sql] = took * DECAY
            return True
        return False

    def _kind(self, sql: str) -> int:
        """A Database statement's kind from its first keyword (no EXPLAIN: it is not
        needed to stop a read or an own-transaction write, both abortable)."""
        kind = self.kinds.get(sql)
        if kind is None:
            word = keyword(sql)
            kind = READ if word in _READS else WRITE if word in DML else NEVER
            if kind != NEVER and _calls_user_code(sql, self.names):
                kind = NEVER
            self._set_kind(sql, kind)
        return kind

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Worker thread: (re)read the facts of a connection just opened."""
        self.forget()
        self.facts = self._read_facts(conn)

    def learn_at_open(self, conn: sqlite3.Connection) -> None:
        """Worker thread: read the facts of a connection just opened, if no lock is in
        the way.  Not left to the first statement outside a transaction: a connection
        whose first statement opens one (an INSERT, under sqlite3's implicit BEGIN) would
        run none of it here.  Never waits: a locked database (another connection writing
        in rollback-journal mode) leaves them to that first statement, as before, and
        opening stays instant."""
        ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute("PRAGMA busy_timeout=0")
        try:
            self.refresh(conn)
        except sqlite3.Error:
            return  # no facts (refresh forgot them first): nothing runs here yet
        finally:
            conn.execute(f"PRAGMA busy_timeout={ms}")
        assert self.facts is not None
        self.facts.busy_timeout = ms  # read meanwhile as 0

    def commit_cheap(self) -> bool:
        """Whether a COMMIT now is quick and lock-free (see the module docstring)."""
        state = self.state
        if state == CLEAN:
            return True  # nothing written: it only ends the transaction
        facts = self.facts
        if state != LOCKED or facts is None or self.hooked:
            return False
        conn = self.worker.connection
        if conn is None:
            return False
        return self._commit_room(facts, conn.total_changes - self.tx_base + self.tx_extra)

    @staticmethod
    def _commit_room(facts: _Facts, writes: int) -> bool:
        """Whether a commit of ``writes`` small row changes stays under the automatic
        checkpoint (SQLite runs it at the commit that takes the WAL past
        wal_autocheckpoint frames; a small row adds a few)."""
        if not facts.commit_free:
            return False
        if facts.autocheckpoint > 0 and facts.wal_path:
            frames = facts.wal_frames_at_most()
            return frames + 8 * writes + 64 < facts.autocheckpoint
        return True

    def user_code(self, name: str) -> None:
        """A function, aggregate or collation was registered: statements naming it stay
        on the worker (they run Python code that may take any time)."""
        self.names.add(name.lower())
        self.kinds.clear()
        self.fast.clear()

    # -- where the job ran, holding the connection --

    def after(
        self, conn: Optional[sqlite3.Connection], stmt: Optional[tuple[str, Any]], ok: bool
    ) -> None:
        """Learn from a job that just ran (``stmt``: the Job's): its statement's kind, the
        transaction's state."""
        if conn is None:
            return
        state = self.state
        try:
            self._after(conn, stmt, ok)
        finally:
            if self.state != state:  # what fast holds may have been admitted for it
                self.fast.clear()

    def _after(self, conn: sqlite3.Connection, stmt: Optional[tuple[str, Any]], ok: bool) -> None:
        in_tx = conn.in_transaction
        if not in_tx:
            self.state = CLEAN
            self.tx_base = conn.total_changes
            self.tx_extra = 0
        if stmt is None:
            # A fetch, a blob write, a method: whatever it did, a transaction that looked
            # clean may not be any more.
            if in_tx and self.state == CLEAN:
                self.state = UNKNOWN
            return
        sql, params = stmt
        self.learning.discard(sql)  # a run, learned from or not: nothing more to wait for
        if params is _SCRIPT or params is _MANY:  # what they did is not learned
            if params is _SCRIPT:  # a script may change the schema or the settings
                self.forget()
            if in_tx:
                self.state = LOCKED if ok and self.state == LOCKED else UNKNOWN
                self.tx_extra += 1_000
            return
        if self.facts is None and not self.hooked and not in_tx:
            # Only outside a transaction: its reads of the schema would take a lock inside
            # the user's (a SHARED lock held to the end of a deferred transaction, which
            # deadlocks two writers in rollback-journal mode: found by encode/databases'
            # concurrent-transactions test), or fix a WAL snapshot earlier than the user's.
            self.facts = self._read_facts(conn)
        kinds = self.kinds
        kind = kinds.get(sql)
        if kind is None:
            facts = self.facts
            if not ok or self.hooked or facts is None:
                return
            # Inside a transaction too: the statement just ran in it, so the locks that
            # reading its plan needs (the schema: SHARED) are held already.
            kind = _classify(conn, sql, params, facts, self.names)
            self._set_kind(sql, kind)
        if kind == NEVER:
            word = keyword(sql)
            if word in _RESETS or (word == "PRAGMA" and "=" in sql):
                self.forget()
                if not in_tx and not self.hooked:  # read them again now, while we may
                    self.facts = self._read_facts(conn)
        if not in_tx:
            return
        if kind in (WRITE, BIG_WRITE, LOCK):
            if ok:
                self.state = LOCKED
        elif kind == NEVER and self.state != LOCKED:
            self.state = UNKNOWN

    def _read_facts(self, conn: sqlite3.Connection) -> _Facts:
        facts = _Facts(conn)
        worker = self.worker
        if worker.no_wait:  # read as 0, set for the loop thread (Worker.no_wait)
            facts.busy_timeout = worker.wait_ms
        return facts

    def forget(self) -> None:
        """The schema or the settings may have changed: learn kinds and facts again."""
        self.kinds.clear()
        self.hist.clear()
        self.fast.clear()
        self.facts = None


#: ``Job.stmt`` parameters of executescript and executemany: what they do is not learned.
SCRIPT = _SCRIPT
MANY = _MANY
