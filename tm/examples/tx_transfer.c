/*
 * tx_transfer: a C program written for an X/Open TX monitor (tx.h, xa.h and the
 * databases' own client calls only), moving money from an account in PostgreSQL to one
 * in MariaDB atomically, with xarm as the monitor.
 *
 * The resources come from the configuration file named by XARM_TX_CONFIG (profile
 * XARM_TX_PROFILE): rmid 1 must be PostgreSQL (xarm's pq switch: libpq on
 * xarm_pq_conn(1)) and rmid 2 MariaDB (xarm's mysql switch: xarm_mysql_execute(2, ...),
 * since its native connection is a C++ object). Both tables are tx_account(id, balance).
 *
 *   tx_transfer [--count N] [--amount A] [--from ID] [--to ID]
 *               [--fail pq|mysql] [--commit-anyway] [--rollback]
 *               [--chained] [--timeout S --sleep S]
 *
 * Exit status: 0 every transaction did what was asked; 1 a transaction was rolled back
 * (tx_commit answered TX_ROLLBACK); 2 bad usage; 3 tx_open failed; 4 any other TX code.
 */
#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xarm/tx.h"
#include "xarm/xa.h"

/* Exported by libxarm_pq.so and libxarm_mysql.so (see the README's switch table). */
extern PGconn* xarm_pq_conn(int rmid);
extern long long xarm_mysql_execute(int rmid, const char* sql, char* errbuf, size_t errlen);

enum { RM_PQ = 1, RM_MYSQL = 2 };

static const char* tx_name(int rc) {
    switch (rc) {
        case TX_OK:
            return "TX_OK";
        case TX_NOT_SUPPORTED:
            return "TX_NOT_SUPPORTED";
        case TX_OUTSIDE:
            return "TX_OUTSIDE";
        case TX_ROLLBACK:
            return "TX_ROLLBACK";
        case TX_MIXED:
            return "TX_MIXED";
        case TX_HAZARD:
            return "TX_HAZARD";
        case TX_PROTOCOL_ERROR:
            return "TX_PROTOCOL_ERROR";
        case TX_ERROR:
            return "TX_ERROR";
        case TX_FAIL:
            return "TX_FAIL";
        case TX_EINVAL:
            return "TX_EINVAL";
        case TX_COMMITTED:
            return "TX_COMMITTED";
        case TX_NO_BEGIN:
            return "TX_NO_BEGIN";
        case TX_ROLLBACK_NO_BEGIN:
            return "TX_ROLLBACK_NO_BEGIN";
        case TX_MIXED_NO_BEGIN:
            return "TX_MIXED_NO_BEGIN";
        case TX_HAZARD_NO_BEGIN:
            return "TX_HAZARD_NO_BEGIN";
        case TX_COMMITTED_NO_BEGIN:
            return "TX_COMMITTED_NO_BEGIN";
        default:
            return "unknown TX code";
    }
}

static void report(const char* call, int rc) {
    const char* why = xarm_tx_message();
    printf("%s: %s%s%s\n", call, tx_name(rc), *why ? ": " : "", why);
}

/* One statement on PostgreSQL that must change exactly one row. */
static int pq_update(const char* sql) {
    PGconn* c = xarm_pq_conn(RM_PQ);
    PGresult* r;
    int ok;
    if (c == NULL) {
        fprintf(stderr, "tx_transfer: rmid %d is not open\n", RM_PQ);
        return 0;
    }
    r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0;
    if (!ok)
        printf("postgresql: %s", PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r) : "no row\n");
    PQclear(r);
    return ok;
}

static int mysql_update(const char* sql) {
    char err[512];
    const long long n = xarm_mysql_execute(RM_MYSQL, sql, err, sizeof err);
    if (n != 1) printf("mariadb: %s\n", n < 0 ? err : "no row");
    return n == 1;
}

/* The transfer's statements; fail names the database given a statement that fails. */
static int work(long amount, long from, long to, const char* fail) {
    char sql[256];
    int ok;
    snprintf(sql, sizeof sql, "UPDATE tx_account SET balance = balance - %ld WHERE id = %ld",
             amount, from);
    ok = pq_update(sql);
    snprintf(sql, sizeof sql, "UPDATE tx_account SET balance = balance + %ld WHERE id = %ld",
             amount, to);
    ok = mysql_update(sql) && ok;
    if (fail != NULL && strcmp(fail, "pq") == 0)
        ok = pq_update("UPDATE no_such_table SET x = 1") && ok;
    if (fail != NULL && strcmp(fail, "mysql") == 0)
        ok = mysql_update("UPDATE no_such_table SET x = 1") && ok;
    return ok;
}

static int usage(void) {
    fprintf(
        stderr,
        "usage: tx_transfer [--count N] [--amount A] [--from ID] [--to ID] [--fail pq|mysql]\n"
        "                   [--commit-anyway] [--rollback] [--chained] [--timeout S --sleep S]\n");
    return 2;
}

int main(int argc, char** argv) {
    long count = 1, amount = 10, from = 1, to = 1, timeout = -1, sleep_s = 0;
    const char* fail = NULL;
    int commit_anyway = 0, rollback = 0, chained = 0, status = 0, rc, i;
    for (i = 1; i < argc; ++i) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--commit-anyway") == 0)
            commit_anyway = 1;
        else if (strcmp(a, "--rollback") == 0)
            rollback = 1;
        else if (strcmp(a, "--chained") == 0)
            chained = 1;
        else if (v == NULL)
            return usage();
        else if (strcmp(a, "--count") == 0)
            count = atol(v), ++i;
        else if (strcmp(a, "--amount") == 0)
            amount = atol(v), ++i;
        else if (strcmp(a, "--from") == 0)
            from = atol(v), ++i;
        else if (strcmp(a, "--to") == 0)
            to = atol(v), ++i;
        else if (strcmp(a, "--fail") == 0)
            fail = v, ++i;
        else if (strcmp(a, "--timeout") == 0)
            timeout = atol(v), ++i;
        else if (strcmp(a, "--sleep") == 0)
            sleep_s = atol(v), ++i;
        else
            return usage();
    }

    rc = tx_open();
    if (rc != TX_OK) {
        report("tx_open", rc);
        return 3;
    }
    if (timeout >= 0 && (rc = tx_set_transaction_timeout(timeout)) != TX_OK) {
        report("tx_set_transaction_timeout", rc);
        return 4;
    }
    if (chained) {
        /* One tx_begin; every tx_commit begins the next transaction. */
        tx_set_transaction_control(TX_CHAINED);
        if ((rc = tx_begin()) != TX_OK) {
            report("tx_begin", rc);
            return 4;
        }
    }
    for (i = 0; i < count; ++i) {
        int ok;
        if (!chained && (rc = tx_begin()) != TX_OK) {
            report("tx_begin", rc);
            status = 4;
            break;
        }
        ok = work(amount, from, to, fail);
        if (sleep_s > 0) sleep((unsigned)sleep_s);
        if (chained && i == count - 1) tx_set_transaction_control(TX_UNCHAINED);
        if (rollback || (!ok && !commit_anyway)) {
            rc = tx_rollback();
            report("tx_rollback", rc);
            if (rc != TX_OK)
                status = 4;
            else if (!rollback)
                status = 1;
            continue;
        }
        rc = tx_commit();
        report("tx_commit", rc);
        if (rc == TX_ROLLBACK)
            status = 1;
        else if (rc != TX_OK)
            status = 4;
        if (chained && i < count - 1 && tx_info(NULL) != 1) {
            printf("chained: no transaction after tx_commit\n");
            status = 4;
            break;
        }
    }
    rc = tx_close();
    if (rc != TX_OK) {
        report("tx_close", rc);
        status = 4;
    }
    return status;
}
