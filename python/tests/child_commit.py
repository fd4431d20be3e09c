"""A process that commits one Zope transaction over PostgreSQL, MariaDB and an SQLite
last resource, and kills itself with SIGKILL at a given point of the commit:

  after-votes   PostgreSQL and MariaDB prepared, the last resource not yet committed
  before-finish every vote done (the last resource committed), no tpc_finish yet

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
    places it between the xarm branches and the last resource."""

    def __init__(self, point):
        self.point = point
        self.transaction_manager = transaction.manager

    def sortKey(self):
        # after-votes: after "xarm:..." and before the last resource, so its tpc_vote
        # runs when the branches have prepared. before-finish: first of all, so its
        # tpc_finish runs before any branch's.
        return "xarm~killer" if self.point == "after-votes" else "!killer"

    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        if self.point == "after-votes":
            os.kill(os.getpid(), signal.SIGKILL)

    def tpc_finish(self, txn):
        if self.point == "before-finish":
            os.kill(os.getpid(), signal.SIGKILL)

    def tpc_abort(self, txn):
        pass


def main():
    point, table, sqlite_path = sys.argv[1:4]
    pg = xarm.connect("pq", os.environ["XARM_TEST_PQ"])
    maria = xarm.connect("mysql", os.environ["XARM_TEST_MYSQL"])
    lite = xarm.connect("sqlite", f"path='{sqlite_path}'")
    transaction.begin()
    dms = [xarm.transaction.join(c) for c in (pg, maria, lite)]
    for c in (pg, maria, lite):
        c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, point))
    transaction.get().join(Killer(point))
    print(dms[0].xid.gtrid, flush=True)
    transaction.commit()
    print("committed", flush=True)  # never reached


if __name__ == "__main__":
    main()
