"""Branches prepared by psycopg2 are recovered and finished through xarm, and the other
way round: both write PostgreSQL gids as <format_id>_<base64 gtrid>_<base64 bqual>."""
import base64
import uuid

import psycopg2
import pytest

import xarm
from conftest import server


@pytest.fixture
def pq():
    info = server("XARM_TEST_PQ")
    opened = []

    def xarm_conn():
        c = xarm.connect("pq", info)
        opened.append(c)
        return c

    def psycopg_conn():
        c = psycopg2.connect(info)
        opened.append(c)
        return c

    setup = psycopg2.connect(info)
    table = "py_" + uuid.uuid4().hex[:12]
    with setup.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    setup.commit()
    yield xarm_conn, psycopg_conn, table
    for c in opened:
        c.close()
    setup.close()


def xarm_prepare(x, xid, table, id_):
    """Prepares a branch inserting id_ and closes its connection."""
    x.tpc_begin(xid)
    x.cursor().execute(f"INSERT INTO {table} VALUES (?)", (id_,))
    x.tpc_prepare()
    x.close()


def rows(info_conn, table):
    cur = info_conn.cursor()
    cur.execute(f"SELECT id FROM {table} ORDER BY id")
    return [r[0] for r in cur.fetchall()]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
# psycopg2 takes printable ASCII only; '/', '+', '=' and '_' test the base64 and the
# separators.
@pytest.mark.parametrize("gtrid,bqual", [("order-17", "pg"), ("a/b+c= _d", ""), ("g", "b_" * 32)])
def test_psycopg2_prepared_recovered_by_xarm(pq, outcome, gtrid, bqual):
    xarm_conn, psycopg_conn, table = pq
    gtrid = gtrid + uuid.uuid4().hex[:8]
    p = psycopg_conn()
    p.tpc_begin(p.xid(77, gtrid, bqual))
    p.cursor().execute(f"INSERT INTO {table} VALUES (1)")
    p.tpc_prepare()
    p.close()

    x = xarm_conn()
    found = [y for y in x.tpc_recover() if y.gtrid == gtrid]
    assert found == [(77, gtrid, bqual)]
    if outcome == "commit":
        x.tpc_commit(found[0])
    else:
        x.tpc_rollback(found[0])
    assert rows(x, table) == ([1] if outcome == "commit" else [])


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_xarm_prepared_recovered_by_psycopg2(pq, outcome):
    xarm_conn, psycopg_conn, table = pq
    gtrid = "xarm-" + uuid.uuid4().hex
    x = xarm_conn()
    xarm_prepare(x, x.xid(78, gtrid, "maria/pg+= _"), table, 2)

    p = psycopg_conn()
    found = [y for y in p.tpc_recover() if y.gtrid == gtrid]
    assert len(found) == 1
    assert (found[0].format_id, found[0].gtrid, found[0].bqual) == (78, gtrid, "maria/pg+= _")
    if outcome == "commit":
        p.tpc_commit(found[0])
    else:
        p.tpc_rollback(found[0])
    assert rows(p, table) == ([2] if outcome == "commit" else [])


def test_non_ascii_xid_reaches_psycopg2_as_its_gid(pq):
    """psycopg2 parses ASCII parts only: it shows xarm's UTF-8 xid as the gid itself
    (unparsed), which is exactly the shared encoding, and can still finish it."""
    xarm_conn, psycopg_conn, table = pq
    gtrid = "☃-" + uuid.uuid4().hex
    x = xarm_conn()
    xarm_prepare(x, x.xid(79, gtrid, "ü"), table, 4)
    gid = "79_%s_%s" % (base64.b64encode(gtrid.encode()).decode(), base64.b64encode("ü".encode()).decode())
    p = psycopg_conn()
    found = [y for y in p.tpc_recover() if y.gtrid == gid]
    assert len(found) == 1 and found[0].format_id is None
    p.tpc_commit(found[0])
    assert rows(p, table) == [4]


def test_foreign_gid_is_unparsed_and_finishable(pq):
    xarm_conn, psycopg_conn, table = pq
    name = "by-hand-" + uuid.uuid4().hex
    p = psycopg_conn()
    p.autocommit = True
    cur = p.cursor()
    cur.execute("BEGIN")
    cur.execute(f"INSERT INTO {table} VALUES (3)")
    cur.execute(f"PREPARE TRANSACTION '{name}'")
    x = xarm_conn()
    found = [y for y in x.tpc_recover() if y.gtrid == name]
    assert found == [(None, name, None)]  # as psycopg2 shows a foreign name
    x.tpc_commit(found[0])
    assert rows(x, table) == [3]
