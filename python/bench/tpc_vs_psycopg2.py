"""xarm from Python against psycopg2 on the same two-phase PostgreSQL transaction:

    tpc_begin(xid); UPDATE bench SET v = v + 1 WHERE id = ?; tpc_prepare(); tpc_commit()

Rounds interleave the two (the order alternates), so that drift in the machine's load
hits both alike; each round prints its throughputs and ratio, and the end the median.

Usage: PYTHONPATH=build/python /usr/bin/python3 python/bench/tpc_vs_psycopg2.py \\
           [--rounds 7] [--transactions 500] [--info "$XARM_TEST_PQ"]
"""
import argparse
import os
import statistics
import time
import uuid

import psycopg2

import xarm


def run(conn, n, table, placeholder):
    """n transactions; the same code for both modules but for the placeholder (xarm's
    qmark, psycopg2's format); returns transactions per second."""
    cur = conn.cursor()
    prefix = "b-" + uuid.uuid4().hex[:8] + "-"
    sql = f"UPDATE {table} SET v = v + 1 WHERE id = {placeholder}"
    start = time.perf_counter()
    for i in range(n):
        conn.tpc_begin(conn.xid(1, prefix + str(i), "b"))
        cur.execute(sql, (i % 10,))
        conn.tpc_prepare()
        conn.tpc_commit()
    return n / (time.perf_counter() - start)


def run_xarm(conn, n, table):
    return run(conn, n, table, "?")


def run_psycopg2(conn, n, table):
    return run(conn, n, table, "%s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--transactions", type=int, default=500)
    ap.add_argument("--info", default=os.environ.get("XARM_TEST_PQ"))
    args = ap.parse_args()
    if not args.info:
        ap.error("no server: --info or XARM_TEST_PQ")

    table = "bench_py_" + uuid.uuid4().hex[:8]
    setup = psycopg2.connect(args.info)
    with setup.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v BIGINT NOT NULL)")
        cur.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(0, 9) g")
    setup.commit()
    x = xarm.connect("pq", args.info)
    p = psycopg2.connect(args.info)
    try:
        run_xarm(x, 50, table)  # warm both up
        run_psycopg2(p, 50, table)
        ratios = []
        print(f"{args.rounds} rounds of {args.transactions} transactions "
              f"(tpc_begin, UPDATE, tpc_prepare, tpc_commit)")
        for r in range(args.rounds):
            if r % 2 == 0:
                xs, ps = run_xarm(x, args.transactions, table), run_psycopg2(p, args.transactions, table)
            else:
                ps, xs = run_psycopg2(p, args.transactions, table), run_xarm(x, args.transactions, table)
            ratios.append(xs / ps)
            print(f"round {r + 1}: xarm {xs:8.0f} tx/s   psycopg2 {ps:8.0f} tx/s   ratio {xs / ps:.2f}x")
        print(f"median ratio xarm/psycopg2: {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    finally:
        x.close()
        p.close()
        with setup.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")
        setup.commit()
        setup.close()


if __name__ == "__main__":
    main()
