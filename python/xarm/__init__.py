"""xarm: PEP 249 connections with the two-phase extension, for every xarm driver.

    import xarm
    conn = xarm.connect("pq", "host=... dbname=... user=...")
    x = conn.xid(42, "order-17", "pg")
    conn.tpc_begin(x)
    conn.cursor().execute("UPDATE t SET v = ? WHERE id = ?", (1, 7))
    conn.tpc_prepare()
    conn.tpc_commit()

Every database call releases the GIL. Errors carry xa_code, xa_code_name, sqlstate,
native_code, driver and in_doubt (an OperationalError whose commit outcome is unknown).
"""

import collections
import datetime
import time

from . import _xarm
from ._xarm import (  # noqa: F401  (re-exported: PEP 249's names)
    Cursor,
    DatabaseError,
    DataError,
    Error,
    HeuristicError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    TPC_BEGIN_JOIN,
    TPC_BEGIN_NEW,
    TPC_BEGIN_PROMOTE,
    TPC_BEGIN_RESUME,
    TPC_END_NORMAL,
    TPC_END_SUSPEND,
    ProgrammingError,
    TransactionRollbackError,
    Warning,
)

apilevel = "2.0"
# Connections may be shared between threads: each serialises its calls (a mutex taken
# with the GIL released), as psycopg2 does.
threadsafety = 2
paramstyle = "qmark"


class Xid(collections.namedtuple("Xid", "format_id gtrid bqual")):
    """A transaction branch id: a (format_id, gtrid, bqual) triple, as PEP 249 wants.

    gtrid and bqual are str (bytes when a recovered name is not UTF-8). A branch found
    in a database that is not in the standard encoding (a PostgreSQL transaction
    prepared by hand, say) is (None, its whole name, None), as psycopg2 shows it: it can
    still be committed or rolled back by passing it back.
    """

    __slots__ = ()

    def to_string(self):
        """The form `xarm recover --commit XID` and xarm's logs use:
        format_id:hex(gtrid):hex(bqual), or a foreign name quoted."""
        return _xarm._xid_to_string(self)


_xarm._set_xid_type(Xid)


class Connection(_xarm.Connection):
    """A PEP 249 connection over one xarm driver.

    As a context manager it ends the work on leaving: without an exception it commits
    (the branch, when one is active: tpc_commit(), one-phase unless prepared), with one
    it rolls back; the connection stays open, as psycopg2's does.
    """

    Error = Error
    Warning = Warning
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.closed:
            return False
        in_branch = self.current_xid is not None
        if exc_type is None:
            self.tpc_commit() if in_branch else self.commit()
        else:
            self.tpc_rollback() if in_branch else self.rollback()
        return False

    def __repr__(self):
        state = "closed" if self.closed else self.driver
        return f"<xarm.Connection {state}>"


def connect(driver, info=""):
    """Opens a connection: driver is "pq", "mysql", "sqlite", "odbc" or a driver
    library's path; info is that driver's open string (README: "Open strings")."""
    return Connection(driver, info)


# PEP 249's type constructors and type objects.
Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks):
    return Date(*time.gmtime(ticks)[:3])


def TimeFromTicks(ticks):
    return Time(*time.gmtime(ticks)[3:6])


def TimestampFromTicks(ticks):
    return Timestamp(*time.gmtime(ticks)[:6])


class _TypeObject:
    """Equal to a description's type_code (the database's type name) of its kind."""

    def __init__(self, *words):
        self._words = words

    def __eq__(self, type_code):
        name = str(type_code).lower()
        return any(w in name for w in self._words)

    def __hash__(self):
        return hash(self._words)


STRING = _TypeObject("char", "text", "string", "enum")
BINARY = _TypeObject("bytea", "blob", "binary")
NUMBER = _TypeObject("int", "real", "float", "double", "numeric", "decimal", "number", "bool")
DATETIME = _TypeObject("time", "date")
ROWID = _TypeObject("oid", "rowid")
