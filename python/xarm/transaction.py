"""xarm connections as data managers of Zope's transaction package.

    import transaction, xarm, xarm.transaction
    pg, maria = xarm.connect("pq", ...), xarm.connect("mysql", ...)
    xarm.transaction.join(pg)           # transaction.get().join(DataManager(pg))
    xarm.transaction.join(maria)
    ... work on pg and maria ...
    transaction.commit()                # two-phase commit across both (and any other
                                        # data manager joined), or transaction.abort()

Joining begins the connection's branch at once (tpc_begin), so that the work that follows
is in it. The branches share a gtrid made for the Zope transaction; each has its own bqual.

A connection whose driver cannot prepare (SQLite) joins as the *last resource*: its sort
key orders it after every other data manager, so its tpc_vote runs when all the others
have voted, and commits it in one phase. That commit is the transaction's decision: when
it fails, the package aborts and the prepared branches are rolled back; when it
succeeds, tpc_finish commits them. Only one last resource may join a transaction. In the
same local transaction the last resource records the gtrid in a table xarm_decisions, so
that recovery after a crash knows the decision (see recover()); once every branch has
committed, the record is deleted.

A crash between the phases (after the votes, before every tpc_finish ran) leaves
branches prepared in PostgreSQL and MariaDB, holding their locks. recover() finishes
them: commit when the last resource recorded the gtrid (the decision was commit), else
roll back (presumed abort: no branch can have committed before the decision). Without a
last resource there is no record: a crash *during* tpc_finish (some branches committed,
others still prepared) cannot be told from a crash before it, and recover() would roll
the rest back; use a last resource, or xarm's transaction manager (xarm::tm, a logged
decision), when that matters. `xarm recover --driver pq --open ... --commit XID` and
tpc_recover()/tpc_commit(xid) finish a branch by hand; the xid's string form for the
command is format_id:hex(gtrid):hex(bqual).
"""

import logging
import uuid

import transaction as _transaction

import xarm

#: The format id of the branches this module makes ("zope").
FORMAT_ID = 0x7A6F7065
#: Sorts after any other data manager's key (Zope orders tpc_vote by sortKey()).
LAST_RESOURCE_KEY = "~~~~xarm-last-resource"
DECISIONS_TABLE = "xarm_decisions"

_log = logging.getLogger("xarm.transaction")


class _State:
    """What the data managers of one Zope transaction share."""

    def __init__(self):
        self.gtrid = uuid.uuid4().hex
        self.branches = 0
        self.last_resource = None
        # Set once the transaction's outcome is commit (the last resource committed or
        # a tpc_finish ran) or unknown: from then on no prepared branch is rolled back.
        self.decided = False


def _state_of(txn):
    try:
        return txn.data(_State)
    except KeyError:
        state = _State()
        txn.set_data(_State, state)
        return state


class DataManager:
    """Joins one xarm connection to a Zope transaction (IDataManager)."""

    def __init__(self, conn, transaction_manager=None, last_resource=None):
        self.conn = conn
        self.transaction_manager = transaction_manager or _transaction.manager
        txn = self.transaction_manager.get()
        self._state = _state_of(txn)
        if last_resource is None:
            last_resource = not conn.capability("two_phase")[0]
        self.last_resource = last_resource
        if last_resource:
            if self._state.last_resource is not None:
                raise xarm.NotSupportedError(
                    "a transaction takes one last resource (a database that cannot prepare); "
                    f"{self._state.last_resource.conn!r} already joined")
            self._state.last_resource = self
            conn.cursor().execute(
                f"CREATE TABLE IF NOT EXISTS {DECISIONS_TABLE} (gtrid VARCHAR(64) PRIMARY KEY)")
            conn.commit()
        self._state.branches += 1
        self.xid = conn.xid(FORMAT_ID, self._state.gtrid, "b%d" % self._state.branches)
        conn.tpc_begin(self.xid)

    def sortKey(self):
        if self.last_resource:
            return LAST_RESOURCE_KEY
        return "xarm:%s:%s" % (self.xid.gtrid, self.xid.bqual)

    def _in_branch(self):
        return not self.conn.closed and self.conn.current_xid == self.xid

    # Before the commit protocol (transaction.abort(), or a resource not begun).
    def abort(self, txn):
        if self._in_branch():
            self.conn.tpc_rollback()

    def tpc_begin(self, txn):
        if not self._in_branch():
            raise xarm.ProgrammingError(f"the connection left branch {self.xid!r} before commit")

    def commit(self, txn):
        pass  # the work is already in the branch

    def tpc_vote(self, txn):
        if not self.last_resource:
            self.conn.tpc_prepare()
            return
        # Every other resource has voted: this commit decides, and its row says so to
        # recovery.
        self.conn.cursor().execute(f"INSERT INTO {DECISIONS_TABLE} (gtrid) VALUES (?)",
                                   (self.xid.gtrid,))
        try:
            self.conn.tpc_commit()
        except xarm.OperationalError as e:
            if e.in_doubt:
                self._state.decided = True
            raise
        self._state.decided = True

    def tpc_finish(self, txn):
        self._state.decided = True
        if self._in_branch():
            self.conn.tpc_commit()
        if self.last_resource:
            # Sorted last, so every branch has committed: the record is no longer needed.
            # Left behind (a crash, an error) it is harmless, recover() finds no branch.
            try:
                self.conn.cursor().execute(f"DELETE FROM {DECISIONS_TABLE} WHERE gtrid = ?",
                                           (self.xid.gtrid,))
                self.conn.commit()
            except xarm.Error:
                _log.warning("could not clear the decision record of %r", self.xid, exc_info=True)

    def tpc_abort(self, txn):
        if not self._in_branch():
            return
        if self._state.decided and self.conn.prepared:
            # Rolling back now could contradict a commit elsewhere: leave it to recover().
            _log.critical("branch %r stays prepared: the transaction's outcome is commit or "
                          "unknown; finish it with xarm.transaction.recover()", self.xid)
            return
        self.conn.tpc_rollback()

    def __repr__(self):
        return f"<xarm.transaction.DataManager {self.xid!r} on {self.conn!r}>"


def join(conn, txn=None, **kwargs):
    """transaction.get().join(DataManager(conn)); returns the data manager."""
    manager = kwargs.pop("transaction_manager", None) or _transaction.manager
    txn = txn or manager.get()
    dm = DataManager(conn, transaction_manager=manager, **kwargs)
    txn.join(dm)
    return dm


def recover(connections, last_resource=None):
    """Finishes the branches this module left prepared (format id FORMAT_ID) on each
    connection: commit when last_resource (the last resource's connection) recorded
    their gtrid, else roll back. Returns {"committed": [...], "rolled_back": [...]}
    (xids). Branches of other formats are left alone."""
    decided = set()
    if last_resource is not None:
        # Any failure to read the record must stop recovery, never turn into roll back.
        cur = last_resource.cursor()
        cur.execute(f"CREATE TABLE IF NOT EXISTS {DECISIONS_TABLE} (gtrid VARCHAR(64) PRIMARY KEY)")
        last_resource.commit()
        cur.execute(f"SELECT gtrid FROM {DECISIONS_TABLE}")
        decided = {row[0] for row in cur.fetchall()}
    done = {"committed": [], "rolled_back": []}
    for conn in connections:
        for x in conn.tpc_recover():
            if x.format_id != FORMAT_ID:
                continue
            if x.gtrid in decided:
                conn.tpc_commit(x)
                done["committed"].append(x)
            else:
                conn.tpc_rollback(x)
                done["rolled_back"].append(x)
    return done
