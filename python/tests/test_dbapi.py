"""PEP 249 and its two-phase extension on every driver, against the real servers."""
import datetime
import os
import threading
import time

import pytest

import xarm
from conftest import new_xid, server


def count(conn, table, where="1=1"):
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}")
    n = cur.fetchone()[0]
    if conn.current_xid is None:
        conn.rollback()  # a fresh snapshot next time (MariaDB's REPEATABLE READ)
    return n


def begin_and_insert(t, table):
    """A connection in a fresh branch that inserted one row; returns (connection, xid)."""
    c = t.connect()
    x = new_xid(c)
    c.tpc_begin(x)
    c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "one"))
    return c, x


def test_module_globals():
    assert xarm.apilevel == "2.0"
    assert xarm.threadsafety in (1, 2, 3)
    assert xarm.paramstyle == "qmark"
    for name in ("InterfaceError", "DatabaseError"):
        assert issubclass(getattr(xarm, name), xarm.Error)
    for name in ("DataError", "OperationalError", "IntegrityError", "InternalError",
                 "ProgrammingError", "NotSupportedError"):
        assert issubclass(getattr(xarm, name), xarm.DatabaseError)
    assert issubclass(xarm.Error, Exception)
    assert issubclass(xarm.Warning, Exception)
    assert not issubclass(xarm.Warning, xarm.Error)
    assert xarm.Connection.ProgrammingError is xarm.ProgrammingError


def test_unknown_driver_names_the_places_tried():
    with pytest.raises(xarm.Error) as e:
        xarm.connect("no_such_driver", "")
    assert "no_such_driver" in str(e.value)


def test_connect_by_library_path(tmp_path):
    path = os.path.join(server("XARM_DRIVER_PATH"), "libxarm_sqlite.so")
    c = xarm.connect(path, f"path='{tmp_path / 'lib.db'}'")
    assert c.driver == "sqlite"
    cur = c.cursor()
    cur.execute("SELECT ?", (41,))
    assert cur.fetchall() == [(41,)]
    c.close()


def test_xid_is_a_triple(target):
    c = target.connect()
    x = c.xid(7, "gtrid", "bqual")
    assert x == (7, "gtrid", "bqual")
    assert (x.format_id, x.gtrid, x.bqual) == (7, "gtrid", "bqual")
    with pytest.raises(xarm.ProgrammingError):
        c.xid(7, "", "b")  # an empty gtrid
    with pytest.raises(xarm.ProgrammingError):
        c.xid(7, "g" * 65, "b")
    with pytest.raises(xarm.ProgrammingError):
        c.xid(-2, "g", "b")


def test_prepare_then_commit(two_phase):
    t = two_phase
    table = t.table()
    c, x = begin_and_insert(t, table)
    assert c.current_xid == x
    other = t.connect()
    assert count(other, table) == 0
    # python-oracledb's answer: a commit is needed (the branch wrote a row).
    assert c.tpc_prepare() is True
    assert c.prepared
    assert x in other.tpc_recover()
    c.tpc_commit()
    assert c.current_xid is None
    assert count(other, table) == 1
    assert x not in other.tpc_recover()


def test_prepare_then_rollback(two_phase):
    t = two_phase
    table = t.table()
    c, x = begin_and_insert(t, table)
    c.tpc_prepare()
    c.tpc_rollback()
    other = t.connect()
    assert count(other, table) == 0
    assert x not in other.tpc_recover()


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_recover_and_finish_from_another_connection(two_phase, outcome):
    t = two_phase
    table = t.table()
    c, x = begin_and_insert(t, table)
    c.tpc_prepare()
    c.close()  # the prepared branch outlives its connection
    r = t.connect()
    found = [y for y in r.tpc_recover() if y == x]
    assert found == [x]
    assert isinstance(found[0], xarm.Xid)
    if outcome == "commit":
        r.tpc_commit(found[0])
    else:
        r.tpc_rollback(found[0])
    assert x not in r.tpc_recover()
    assert count(r, table) == (1 if outcome == "commit" else 0)
    with pytest.raises(xarm.ProgrammingError):
        r.tpc_commit(x)  # no longer exists (XAER_NOTA)


def test_one_phase_commit_and_rollback(target):
    table = target.table()
    c = target.connect()
    c.tpc_begin(new_xid(c))
    c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "kept"))
    c.tpc_commit()  # not prepared: one phase
    c.tpc_begin(new_xid(c))
    c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (2, "lost"))
    c.tpc_rollback()
    assert count(target.connect(), table) == 1


def test_sqlite_prepare_is_not_supported(tmp_path):
    c = xarm.connect("sqlite", f"path='{tmp_path / 'x.db'}'")
    c.cursor().execute("CREATE TABLE t (id INTEGER)")
    c.commit()
    assert c.capability("two_phase")[0] is False
    reason = c.capability("two_phase")[1]
    c.tpc_begin(new_xid(c))
    c.cursor().execute("INSERT INTO t VALUES (?)", (1,))
    with pytest.raises(xarm.NotSupportedError) as e:
        c.tpc_prepare()
    assert e.value.sqlstate == "0A000"
    assert e.value.driver == "sqlite"
    assert reason and reason in str(e.value)
    # The branch stays idle: still committed in one phase.
    c.tpc_commit()
    assert count(c, "t") == 1
    assert c.tpc_recover() == []
    # Nothing is ever left prepared, so finishing by xid finds no branch (XAER_NOTA).
    for finish in (c.tpc_commit, c.tpc_rollback):
        with pytest.raises(xarm.ProgrammingError) as e:
            finish(c.xid(1, "g", "b"))
        assert e.value.xa_code_name == "XAER_NOTA"
    c.close()


def test_protocol_misuse_is_programming_error(two_phase):
    t = two_phase
    table = t.table()
    c = t.connect()
    c.tpc_begin(new_xid(c))
    with pytest.raises(xarm.ProgrammingError):
        c.tpc_begin(new_xid(c))  # already in a branch
    with pytest.raises(xarm.ProgrammingError):
        c.commit()  # PEP 249: commit() inside a two-phase transaction
    c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "x"))
    c.tpc_prepare()
    with pytest.raises(xarm.ProgrammingError):
        c.cursor().execute(f"SELECT * FROM {table}")
    with pytest.raises(xarm.ProgrammingError):
        c.tpc_commit(c.xid(1, "other", "b"))  # by xid, but inside a branch
    c.tpc_rollback()
    with pytest.raises(xarm.ProgrammingError) as e:
        c.tpc_prepare()  # no branch
    assert e.value.xa_code_name == "XAER_PROTO"


def test_tpc_end_join_resume_and_one_phase_by_xid(target):
    """python-oracledb's flags: tpc_end, TPC_BEGIN_JOIN/RESUME, tpc_commit(xid, one_phase)."""
    table = target.table()
    c = target.connect()
    x = new_xid(c)
    with pytest.raises(xarm.ProgrammingError):
        c.tpc_end()  # no branch
    c.tpc_begin(x)
    c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "one"))
    c.tpc_end(x, xarm.TPC_END_NORMAL)
    joins = c.capability("join")[0]
    if joins:
        c.tpc_begin(x, xarm.TPC_BEGIN_JOIN)
        c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (2, "two"))
        c.tpc_end()
    else:
        with pytest.raises(xarm.NotSupportedError):
            c.tpc_begin(x, xarm.TPC_BEGIN_JOIN)
    with pytest.raises(xarm.ProgrammingError):
        c.tpc_commit(new_xid(c), one_phase=True)  # not the branch ended here
    c.tpc_commit(x, one_phase=True)
    assert count(target.connect(), table) == (2 if joins else 1)
    if c.capability("suspend_resume")[0]:
        y = new_xid(c)
        c.tpc_begin(y)
        c.tpc_end(flags=xarm.TPC_END_SUSPEND)
        c.tpc_begin(y, flags=xarm.TPC_BEGIN_RESUME)
        c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (3, "three"))
        c.tpc_commit()
        assert count(target.connect(), table) == (3 if joins else 2)
    with pytest.raises(xarm.NotSupportedError):
        c.tpc_begin(new_xid(c), xarm.TPC_BEGIN_PROMOTE)
    with pytest.raises(xarm.ProgrammingError):
        c.tpc_begin(new_xid(c), 99)  # no such flag
    with pytest.raises(xarm.ProgrammingError):
        c.tpc_begin(new_xid(c), xarm.TPC_BEGIN_NEW, -1)
    if not c.capability("timeout")[0]:
        with pytest.raises(xarm.NotSupportedError):
            c.tpc_begin(new_xid(c), timeout=5)
    c.close()


def test_errors_carry_diagnostics(target):
    table = target.table()
    c = target.connect()
    cur = c.cursor()
    cur.execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "a"))
    c.commit()
    with pytest.raises(xarm.IntegrityError) as e:
        cur.execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "again"))
    assert e.value.sqlstate.startswith("23")
    assert e.value.driver == target.driver
    assert e.value.in_doubt is False
    assert e.value.xa_code_name.startswith("XA")
    if target.name == "pq":
        assert e.value.sqlstate == "23505"
    if target.name == "mysql":
        assert e.value.native_code == 1062
    c.rollback()
    with pytest.raises(xarm.DatabaseError) as e:
        cur.execute("SELEKT 1")
    assert isinstance(e.value.xa_code, int)
    assert len(e.value.sqlstate) == 5
    c.rollback()
    with pytest.raises(xarm.ProgrammingError) as e:
        cur.execute(f"SELECT v FROM {table} WHERE id = ?", (1, 2))  # one ? for two values
    assert e.value.sqlstate == "07001"
    with pytest.raises(xarm.ProgrammingError):
        cur.execute("SELECT ?", (object(),))


def test_cursor(target):
    table = target.table()
    c = target.connect()
    with c.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (id, v) VALUES (?, ?)",
                        [(i, f"v{i}") for i in range(1, 8)])
        assert cur.rowcount == 7
        c.commit()
        cur.execute(f"SELECT id, v FROM {table} ORDER BY id")
        assert [d[0] for d in cur.description] == ["id", "v"]
        assert len(cur.description[0]) == 7
        assert cur.rowcount == 7
        assert cur.fetchone() == (1, "v1")
        assert cur.fetchmany(2) == [(2, "v2"), (3, "v3")]
        cur.arraysize = 3
        assert len(cur.fetchmany()) == 3
        assert cur.fetchall() == [(7, "v7")]
        assert cur.fetchone() is None
        cur.execute(f"UPDATE {table} SET v = ? WHERE id > ?", ("big", 4))
        assert cur.description is None
        assert cur.rowcount == 3
        with pytest.raises(xarm.ProgrammingError):
            cur.fetchone()  # no rows from an UPDATE
        c.rollback()
        cur.execute(f"SELECT id FROM {table} WHERE v = ? ORDER BY id", ("v5",))
        assert [r for r in cur] == [(5,)]
    assert cur.closed
    with pytest.raises(xarm.ProgrammingError):
        cur.execute("SELECT 1")


def test_context_manager(target):
    table = target.table()
    with target.connect() as c:
        c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "kept"))
    with pytest.raises(RuntimeError):
        with c:
            c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (2, "lost"))
            raise RuntimeError("leave")
    with pytest.raises(RuntimeError):
        with c:
            c.tpc_begin(new_xid(c))
            c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (3, "lost"))
            raise RuntimeError("leave")
    assert c.current_xid is None
    assert count(target.connect(), table) == 1
    c.close()
    c.close()  # twice is fine
    with pytest.raises(xarm.Error):
        c.cursor()
    with pytest.raises(xarm.ProgrammingError):
        c.tpc_begin(c.xid(1, "g", "b"))


COLUMNS = {
    "pq": "id INTEGER PRIMARY KEY, i BIGINT, f DOUBLE PRECISION, s TEXT, b BYTEA, t TIMESTAMP, o BOOLEAN",
    "mysql": "id INTEGER PRIMARY KEY, i BIGINT, f DOUBLE, s TEXT, b LONGBLOB, t DATETIME(6), o BOOLEAN",
    "sqlite": "id INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT, b BLOB, t TIMESTAMP, o BOOLEAN",
}


def round_trip(target, table, value, column):
    c = target.connect()
    cur = c.cursor()
    cur.execute(f"DELETE FROM {table}")
    cur.execute(f"INSERT INTO {table} (id, {column}) VALUES (?, ?)", (1, value))
    c.commit()
    cur.execute(f"SELECT {column} FROM {table} WHERE id = ?", (1,))
    (got,) = cur.fetchone()
    # And as a parameter compared by the database itself.
    if value is None:
        cur.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} IS NULL")
    else:
        cur.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (value,))
    matches = cur.fetchone()[0]
    c.rollback()
    return got, matches


def test_types_round_trip(target):
    kind = "pq" if target.pq else "mysql" if target.mysql else "sqlite"
    table = target.table(COLUMNS[kind])
    every_byte = bytes(range(256)) * 2
    for value, column in [
        (None, "i"), (None, "s"), (None, "b"), (None, "t"),
        (0, "i"), (2**63 - 1, "i"), (-(2**63), "i"), (-1, "i"),
        (1.5, "f"), (-2.25e300, "f"),
        ("", "s"), ("héllo ✓ 'quoted' ?", "s"),
        (every_byte, "b"), (b"", "b"), (b"\x00", "b"),
        (datetime.datetime(2026, 11, 30, 12, 34, 56, 789012), "t"),
        (datetime.datetime(1999, 1, 1), "t"),
    ]:
        got, matches = round_trip(target, table, value, column)
        if kind == "sqlite" and column == "t" and value is not None:
            # SQLite has no timestamp type: stored as its text.
            assert got in (value, value.isoformat(sep=" ")), (value, got)
        else:
            assert got == value, (column, value, got)
            assert type(got) is type(value), (column, value, got)
        assert matches == 1, (column, value)
    # MariaDB's BOOLEAN is TINYINT(1); psqlODBC hands BOOLEAN out as text (BoolsAsChar).
    truth = {"pq": True, "sqlite": 1, "mysql": 1, "odbc-mysql": 1, "odbc-pq": "1"}[target.name]
    got, matches = round_trip(target, table, True, "o")
    assert (got, type(got), matches) == (truth, type(truth), 1)
    got, matches = round_trip(target, table, False, "o")
    assert (got, matches) == (type(truth)(0) if truth != "1" else "0", 1)
    # An aware datetime is stored as UTC.
    aware = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    if kind != "sqlite":
        got, _ = round_trip(target, table, aware, "t")
        assert got == datetime.datetime(2026, 1, 1, 10)


def test_big_int_beyond_64_bits(two_phase):
    t = two_phase
    table = t.table("id INTEGER PRIMARY KEY, n NUMERIC(40, 0)")
    c = t.connect()
    cur = c.cursor()
    big = 2**64 + 1
    cur.execute(f"INSERT INTO {table} (id, n) VALUES (?, ?)", (1, big))
    c.commit()
    cur.execute(f"SELECT n FROM {table} WHERE n = ?", (big,))
    (got,) = cur.fetchone()
    assert int(got) == big


def test_bare_parameters_keep_their_type():
    """Issue 21: with nothing in the statement to type it, PostgreSQL took a parameter
    for text, so SELECT ? bound to 5 gave '5'. The same text with other types of values
    (the cursor caches the statement) still works."""
    c = xarm.connect("pq", server("XARM_TEST_PQ"))
    try:
        cur = c.cursor()
        cur.execute("SELECT ?, ?, ?, ?, ?", (5, 2**40, 1.5, True, "x"))
        assert cur.fetchone() == (5, 2**40, 1.5, True, "x")
        for value in (7, "seven", None, 7.5, False, b"7", 8):
            cur.execute("SELECT ?", (value,))
            (got,) = cur.fetchone()
            assert (got, type(got)) == (value, type(value))
        c.rollback()
    finally:
        c.close()


def test_gil_released_during_database_calls(two_phase):
    t = two_phase
    c = t.connect()
    sleep = "SELECT pg_sleep(1.5)" if t.pq else "SELECT SLEEP(1.5)"
    th = threading.Thread(target=lambda: c.cursor().execute(sleep))
    th.start()
    time.sleep(0.1)
    # With the GIL held by the sleeping call this loop would stall for about 1.4 s; the
    # bound leaves room for a loaded machine (a sanitized build stalled 0.38 s once).
    last, worst = time.monotonic(), 0.0
    while th.is_alive():
        now = time.monotonic()
        worst = max(worst, now - last)
        last = now
    th.join()
    assert worst < 0.75


def test_connection_shared_between_threads(two_phase):
    t = two_phase
    table = t.table()
    c = t.connect()

    def insert(base):
        cur = c.cursor()
        for i in range(20):
            cur.execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (base + i, "t"))

    threads = [threading.Thread(target=insert, args=(k * 100,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    c.commit()
    assert count(t.connect(), table) == 80


def test_statements_follow_schema_changes(target, request):
    """Statements with parameters are prepared once per connection and reused; one the
    schema outgrew fails at most once and is prepared afresh."""
    table = target.table()
    c = target.connect()
    cur = c.cursor()
    cur.execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (1, "a"))
    c.commit()
    select = f"SELECT * FROM {table} WHERE id = ?"
    cur.execute(select, (1,))
    assert cur.fetchall() == [(1, "a")]
    c.commit()
    cur.execute(f"ALTER TABLE {table} ADD COLUMN w INTEGER")
    c.commit()
    try:
        cur.execute(select, (1,))
        got = cur.fetchall()
    except xarm.DatabaseError:
        c.rollback()
        cur.execute(select, (1,))
        got = cur.fetchall()
    assert got == [(1, "a", None)]
    c.rollback()
