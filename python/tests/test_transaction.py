"""xarm connections as data managers of Zope's transaction package: one
transaction.commit() over PostgreSQL, MariaDB and an SQLite last resource."""
import os
import subprocess
import sys
import uuid

import pytest
import transaction

import xarm
import xarm.transaction
from conftest import server

HERE = os.path.dirname(os.path.abspath(__file__))


class Dbs:
    def __init__(self, tmp_path):
        self.pq_info = server("XARM_TEST_PQ")
        self.my_info = server("XARM_TEST_MYSQL")
        self.lite_path = str(tmp_path / "last.db")
        self.table = "py_" + uuid.uuid4().hex[:12]
        self._open = []
        for c in self.connect_all():
            c.cursor().execute(f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, v VARCHAR(100))")
            c.commit()

    def connect_all(self):
        cs = [xarm.connect("pq", self.pq_info), xarm.connect("mysql", self.my_info),
              xarm.connect("sqlite", f"path='{self.lite_path}'")]
        self._open += cs
        return cs

    def contents(self):
        out = []
        for c in self.connect_all():
            cur = c.cursor()
            cur.execute(f"SELECT id, v FROM {self.table} ORDER BY id")
            out.append(cur.fetchall())
        return out

    def prepared(self, gtrid=None):
        pg, my, _ = self.connect_all()
        return [x for c in (pg, my) for x in c.tpc_recover()
                if x.format_id == xarm.transaction.FORMAT_ID and (gtrid is None or x.gtrid == gtrid)]

    def close(self):
        for c in self._open:
            if not c.closed:
                c.close()


@pytest.fixture
def dbs(tmp_path):
    transaction.abort()
    d = Dbs(tmp_path)
    yield d
    transaction.abort()
    d.close()


def insert(conns, table, id_, v):
    for c in conns:
        c.cursor().execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (id_, v))


def test_commit_across_postgresql_mariadb_and_sqlite_last(dbs):
    conns = dbs.connect_all()
    txn = transaction.begin()
    dms = [xarm.transaction.join(c) for c in conns]
    assert dms[2].last_resource and not dms[0].last_resource and not dms[1].last_resource
    assert len({dm.xid.gtrid for dm in dms}) == 1
    assert len({dm.xid for dm in dms}) == 3
    insert(conns, dbs.table, 1, "one")
    seen = []

    def before():  # a before-commit hook still works inside the branches
        insert(conns[:2], dbs.table, 2, "hook")

    txn.addBeforeCommitHook(before)
    txn.addAfterCommitHook(lambda ok: seen.append(ok))
    transaction.commit()
    assert seen == [True]
    pg, my, lite = dbs.contents()
    assert pg == my == [(1, "one"), (2, "hook")]
    assert lite == [(1, "one")]
    assert dbs.prepared(dms[0].xid.gtrid) == []
    cur = dbs.connect_all()[2].cursor()
    cur.execute(f"SELECT COUNT(*) FROM {xarm.transaction.DECISIONS_TABLE}")
    assert cur.fetchone() == (0,)  # the decision record is gone once all committed
    assert all(c.current_xid is None for c in conns)


def test_abort_rolls_everything_back(dbs):
    conns = dbs.connect_all()
    transaction.begin()
    for c in conns:
        xarm.transaction.join(c)
    insert(conns, dbs.table, 1, "lost")
    transaction.abort()
    assert dbs.contents() == [[], [], []]
    assert all(c.current_xid is None for c in conns)


def test_last_resource_failure_rolls_back_the_prepared_branches(dbs):
    conns = dbs.connect_all()
    lite = conns[2]
    cur = lite.cursor()
    cur.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    cur.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, "
                "p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    lite.commit()
    transaction.begin()
    dms = [xarm.transaction.join(c) for c in conns]
    insert(conns, dbs.table, 1, "lost")
    lite.cursor().execute("INSERT INTO child (id, p) VALUES (?, ?)", (1, 99))  # fails at COMMIT
    with pytest.raises(xarm.DatabaseError):
        transaction.commit()
    transaction.abort()
    assert dbs.contents() == [[], [], []]
    assert dbs.prepared(dms[0].xid.gtrid) == []


def test_failed_prepare_rolls_back_everything(dbs):
    conns = dbs.connect_all()
    pg = conns[0]
    cur = pg.cursor()
    parent = dbs.table + "_p"
    cur.execute(f"CREATE TABLE {parent} (id INTEGER PRIMARY KEY)")
    cur.execute(f"CREATE TABLE {parent}_c (id INTEGER PRIMARY KEY, "
                f"p INTEGER REFERENCES {parent}(id) DEFERRABLE INITIALLY DEFERRED)")
    pg.commit()
    transaction.begin()
    dms = [xarm.transaction.join(c) for c in conns]
    insert(conns, dbs.table, 1, "lost")
    cur.execute(f"INSERT INTO {parent}_c (id, p) VALUES (?, ?)", (1, 99))  # fails at PREPARE
    with pytest.raises(xarm.Error):
        transaction.commit()
    transaction.abort()
    assert dbs.contents() == [[], [], []]
    assert dbs.prepared(dms[0].xid.gtrid) == []


def test_one_last_resource_per_transaction(dbs, tmp_path):
    lite1 = xarm.connect("sqlite", f"path='{tmp_path / 'a.db'}'")
    lite2 = xarm.connect("sqlite", f"path='{tmp_path / 'b.db'}'")
    transaction.begin()
    xarm.transaction.join(lite1)
    with pytest.raises(xarm.NotSupportedError):
        xarm.transaction.join(lite2)
    transaction.abort()
    lite1.close()
    lite2.close()


# At each point: which databases hold a prepared branch, and whether the decision (the
# last resource's commit) was made; PostgreSQL already committed at mid-finish.
CRASH_POINTS = [
    ("mid-votes", ["pq"], False),
    ("after-votes", ["pq", "mysql"], False),
    ("before-finish", ["pq", "mysql"], True),
    ("mid-finish", ["mysql"], True),
]


@pytest.mark.parametrize("point,in_doubt_on,decided", CRASH_POINTS)
def test_process_killed_between_the_phases_is_recovered(dbs, point, in_doubt_on, decided):
    child = subprocess.run(
        [sys.executable, os.path.join(HERE, "child_commit.py"), point, dbs.table, dbs.lite_path],
        capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr  # SIGKILL, at the chosen point
    gtrid = child.stdout.split()[0]
    pg, my, lite = dbs.connect_all()
    in_doubt = {"pq": [x for x in pg.tpc_recover() if x.gtrid == gtrid],
                "mysql": [x for x in my.tpc_recover() if x.gtrid == gtrid]}
    assert sorted(d for d in in_doubt if in_doubt[d]) == sorted(in_doubt_on)
    row = [(1, point)]
    pg_rows, my_rows, lite_rows = dbs.contents()
    assert pg_rows == (row if point == "mid-finish" else [])
    assert my_rows == []  # MariaDB's branch is prepared or gone, never committed yet
    assert lite_rows == (row if decided else [])

    done = xarm.transaction.recover([pg, my], last_resource=lite)
    recovered = in_doubt["pq"] + in_doubt["mysql"]
    assert sorted(done["committed" if decided else "rolled_back"]) == sorted(recovered)
    assert done["rolled_back" if decided else "committed"] == []
    assert dbs.prepared(gtrid) == []
    want = row if decided else []
    assert dbs.contents() == [want, want, want]


@pytest.mark.parametrize("driver,var", [("pq", "XARM_TEST_PQ"), ("mysql", "XARM_TEST_MYSQL")])
@pytest.mark.parametrize("verb", ["--commit", "--rollback"])
def test_xarm_recover_finishes_a_branch_python_prepared(driver, var, verb):
    info = server(var)
    xarm_bin = server("XARM_BIN")
    c = xarm.connect(driver, info)
    table = "py_" + uuid.uuid4().hex[:12]
    c.cursor().execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    c.commit()
    x = c.xid(xarm.transaction.FORMAT_ID, uuid.uuid4().hex, "b1")
    c.tpc_begin(x)
    c.cursor().execute(f"INSERT INTO {table} (id) VALUES (?)", (1,))
    c.tpc_prepare()
    c.close()
    listed = subprocess.run([xarm_bin, "recover", "--driver", driver, "--open", info],
                            capture_output=True, text=True, timeout=60)
    assert x.to_string() in listed.stdout, listed.stdout + listed.stderr
    done = subprocess.run([xarm_bin, "recover", "--driver", driver, "--open", info,
                           verb, x.to_string(), "--yes"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    r = xarm.connect(driver, info)
    assert x not in r.tpc_recover()
    cur = r.cursor()
    cur.execute(f"SELECT COUNT(*) FROM {table}")
    assert cur.fetchone()[0] == (1 if verb == "--commit" else 0)
    r.close()


def test_readme_example():
    """The README's transaction.commit() over PostgreSQL and MariaDB, run as written."""
    server("XARM_TEST_PQ")
    server("XARM_TEST_MYSQL")
    readme = open(os.path.join(HERE, "..", "..", "README.md"), encoding="utf-8").read()
    blocks = readme.split("```python\n")[1:]
    code = next(b.split("```")[0] for b in blocks if "addBeforeCommitHook" in b)
    pg = xarm.connect("pq", os.environ["XARM_TEST_PQ"])
    maria = xarm.connect("mysql", os.environ["XARM_TEST_MYSQL"])
    for c, tables in ((pg, ["account"]), (maria, ["ledger", "audit"])):
        cur = c.cursor()
        for t in ["account", "ledger", "audit"]:
            cur.execute(f"DROP TABLE IF EXISTS {t}")
        for t in tables:
            cur.execute({"account": "CREATE TABLE account (id INTEGER PRIMARY KEY, balance BIGINT)",
                         "ledger": "CREATE TABLE ledger (account INTEGER, amount BIGINT)",
                         "audit": "CREATE TABLE audit (what VARCHAR(100))"}[t])
        c.commit()
    pg.cursor().execute("INSERT INTO account VALUES (7, 1000)")
    pg.commit()
    exec(compile(code, "README.md", "exec"), {})
    cur = pg.cursor()
    cur.execute("SELECT balance FROM account WHERE id = 7")
    assert cur.fetchall() == [(900,)]
    cur = maria.cursor()
    cur.execute("SELECT account, amount FROM ledger")
    assert cur.fetchall() == [(7, -100)]
    cur.execute("SELECT what FROM audit")
    assert cur.fetchall() == [("transfer 7",)]
    pg.close()
    maria.close()
