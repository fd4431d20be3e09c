"""A process that commits one Zope transaction over PostgreSQL (branch b1), MariaDB (b2)
and an SQLite last resource, and kills itself with SIGKILL at a given point of the
commit:

  mid-votes     PostgreSQL prepared, MariaDB not yet
  after-votes   both prepared, the last resource not yet committed
  before-finish every vote done (the last resource committed: the decision), no tpc_finish
  mid-finish    PostgreSQL committed, MariaDB still prepared

Usage: child_commit.py POINT TABLE SQLITE_PATH   (servers from XARM_TEST_PQ, XARM_TEST_MYSQL)
It prints the transaction's gtrid before committing.
"""
import os
import signal
import sys

import transaction

import xarm
import xarm.transaction


class Killer:
    """A data manager that kills the process in one phase of the commit; its sort key
    places it among the others (Zope runs each phase in sort-key order)."""

    def __init__(self, point, gtrid):
        self.transaction_manager = transaction.manager
        self.phase = "tpc_finish" if point.endswith("finish") else "tpc_vote"
        self.key = {
            "mid-votes": f"xarm:{gtrid}:b1~",      # after b1, before b2
            "after-votes": "xarm~",                 # after the branches, before the last resource
            "before-finish": "!",                   # before everything
            "mid-finish": f"xarm:{gtrid}:b1~",
        }[point]

    def sortKey(self):
        return self.key

    def _maybe_die(self, phase):
        if phase == self.phase:
            os.kill(os.getpid(), signal.SIGKILL)

    def tpc_vote(self, txn):
        self._maybe_die("tpc_vote")

    def tpc_finish(self, txn):
        self._maybe_die("tpc_finish")

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_abort = abort


def main():
    point, table, sqlite_path = sys.argv[1:4]
    pg = xarm.connect("pq", os.environ["XARM_TEST_PQ"])
    maria = xarm.connect("mysql", os.environ["XARM_TEST_MYSQL"])
    lite = xarm.connect("sqlite", f"path='{sqlite_path}'")
    transaction.begin()
    dms = [xarm.transaction.join(c) for c in (pg, maria, lite)]
    assert [dm.xid.bqual for dm in dms[:2]] == ["b1", "b2"]
    for c in (pg, maria, lite):
        c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, point))
    transaction.get().join(Killer(point, dms[0].xid.gtrid))
    print(dms[0].xid.gtrid, flush=True)
    transaction.commit()
    print("committed", flush=True)  # never reached


if __name__ == "__main__":
    main()
