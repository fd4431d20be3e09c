/*
 * A plain MariaDB/MySQL XA switch on the MySQL C API, written as a third party would
 * (it knows only xa.h and the client library, loaded at run time), for the suite's own
 * tests of SQL access through a MYSQL* (--native-conn plain_my_conn --dbms mysql). One
 * connection per (thread, rmid); every verb is the server's XA statement. It bridges
 * nothing: MariaDB keeps a prepared branch on the connection that prepared it.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xarm/xa.h"

#define EXPORT __attribute__((visibility("default")))

typedef void MYSQL;
typedef void MYSQL_RES;

static MYSQL* (*my_init)(MYSQL*);
static MYSQL* (*my_connect)(MYSQL*, const char*, const char*, const char*, const char*, unsigned,
                            const char*, unsigned long);
static void (*my_close)(MYSQL*);
static int (*my_query)(MYSQL*, const char*, unsigned long);
static unsigned (*my_errno)(MYSQL*);
static MYSQL_RES* (*my_store)(MYSQL*);
static char** (*my_fetch_row)(MYSQL_RES*);
static unsigned long* (*my_lengths)(MYSQL_RES*);
static void (*my_free)(MYSQL_RES*);
static pthread_once_t loaded = PTHREAD_ONCE_INIT;
static int usable;

static void* sym(void* h, const char* name) {
    void* p = dlsym(h, name);
    if (p == NULL) usable = 0;
    return p;
}

static void load(void) {
    void* h = dlopen("libmariadb.so.3", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == NULL) h = dlopen("libmysqlclient.so.21", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == NULL) return;
    usable = 1;
    *(void**)&my_init = sym(h, "mysql_init");
    *(void**)&my_connect = sym(h, "mysql_real_connect");
    *(void**)&my_close = sym(h, "mysql_close");
    *(void**)&my_query = sym(h, "mysql_real_query");
    *(void**)&my_errno = sym(h, "mysql_errno");
    *(void**)&my_store = sym(h, "mysql_store_result");
    *(void**)&my_fetch_row = sym(h, "mysql_fetch_row");
    *(void**)&my_lengths = sym(h, "mysql_fetch_lengths");
    *(void**)&my_free = sym(h, "mysql_free_result");
}

/* The calling thread's connections, and its recovery scan. */
#define SLOTS 16
static __thread struct {
    int rmid;
    MYSQL* conn;
} slots[SLOTS];
static __thread XID* scan;
static __thread long scan_n, scan_pos;

static MYSQL* conn_of(int rmid) {
    for (int i = 0; i < SLOTS; ++i)
        if (slots[i].conn != NULL && slots[i].rmid == rmid) return slots[i].conn;
    return NULL;
}

static int code_of(unsigned e) {
    switch (e) {
        case 1397:
            return XAER_NOTA;
        case 1398:
            return XAER_INVAL;
        case 1399:
            return XAER_PROTO;
        case 1400:
            return XAER_OUTSIDE;
        case 1440:
            return XAER_DUPID;
        case 1402:
            return XA_RBROLLBACK;
        case 1613:
            return XA_RBTIMEOUT;
        case 1614:
            return XA_RBDEADLOCK;
        case 2006:
        case 2013:
            return XAER_RMFAIL;
        default:
            return XAER_RMERR;
    }
}

static int valid(const XID* x) {
    return x != NULL && x->formatID >= 0 && x->gtrid_length >= 1 && x->gtrid_length <= 64 &&
           x->bqual_length >= 0 && x->bqual_length <= 64;
}

/* "XA <verb> X'..',X'..',fmt<suffix>" */
static int xa(int rmid, const char* verb, const XID* x, const char* suffix) {
    MYSQL* c = conn_of(rmid);
    if (c == NULL) return XAER_PROTO;
    if (!valid(x)) return XAER_INVAL;
    char sql[512];
    int n = snprintf(sql, sizeof sql, "XA %s X'", verb);
    for (long i = 0; i < x->gtrid_length; ++i)
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%02x", (unsigned char)x->data[i]);
    n += snprintf(sql + n, sizeof sql - (size_t)n, "',X'");
    for (long i = 0; i < x->bqual_length; ++i)
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%02x",
                      (unsigned char)x->data[x->gtrid_length + i]);
    n += snprintf(sql + n, sizeof sql - (size_t)n, "',%ld%s", x->formatID, suffix);
    if (my_query(c, sql, (unsigned long)n) != 0) return code_of(my_errno(c));
    return XA_OK;
}

static char* value(const char* info, const char* key) {
    static __thread char out[256];
    const size_t k = strlen(key);
    for (const char* p = info; p != NULL && *p != '\0';) {
        while (*p == ' ') ++p;
        if (strncmp(p, key, k) == 0 && p[k] == '=') {
            const char* v = p + k + 1;
            size_t len = strcspn(v, " ");
            if (len >= sizeof out) len = sizeof out - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        p = strchr(p, ' ');
    }
    return NULL;
}

static int p_open(char* info, int rmid, long flags) {
    if (flags != TMNOFLAGS) return XAER_INVAL;
    if (info == NULL) return XAER_INVAL;
    pthread_once(&loaded, load);
    if (!usable) return XAER_RMERR;
    if (conn_of(rmid) != NULL) return XA_OK;
    int free_slot = -1;
    for (int i = 0; i < SLOTS && free_slot < 0; ++i)
        if (slots[i].conn == NULL) free_slot = i;
    if (free_slot < 0) return XAER_RMERR;
    char host[256] = "127.0.0.1", user[256] = "", pw[256] = "", db[256] = "";
    unsigned port = 3306;
    if (value(info, "host")) snprintf(host, sizeof host, "%s", value(info, "host"));
    if (value(info, "user")) snprintf(user, sizeof user, "%s", value(info, "user"));
    if (value(info, "password")) snprintf(pw, sizeof pw, "%s", value(info, "password"));
    if (value(info, "database")) snprintf(db, sizeof db, "%s", value(info, "database"));
    if (value(info, "port")) port = (unsigned)atoi(value(info, "port"));
    MYSQL* c = my_init(NULL);
    if (c == NULL) return XAER_RMERR;
    if (my_connect(c, host, user, pw, db, port, NULL, 0) == NULL) {
        my_close(c);
        return XAER_RMERR;
    }
    slots[free_slot].rmid = rmid;
    slots[free_slot].conn = c;
    return XA_OK;
}

static int p_close(char* info, int rmid, long flags) {
    (void)info;
    if (flags != TMNOFLAGS) return XAER_INVAL;
    for (int i = 0; i < SLOTS; ++i)
        if (slots[i].conn != NULL && slots[i].rmid == rmid) {
            my_close(slots[i].conn);
            slots[i].conn = NULL;
        }
    return XA_OK;
}

static int p_start(XID* x, int rmid, long flags) {
    if (flags & TMJOIN) return xa(rmid, "START", x, " JOIN");
    if (flags & TMRESUME) return xa(rmid, "START", x, " RESUME");
    if (flags != TMNOFLAGS) return XAER_INVAL;
    return xa(rmid, "START", x, "");
}

static int p_end(XID* x, int rmid, long flags) {
    if (flags & TMSUSPEND) return xa(rmid, "END", x, " SUSPEND");
    if (flags & TMFAIL) {
        const int rc = xa(rmid, "END", x, "");
        return rc == XA_OK ? XA_RBROLLBACK : rc;
    }
    if (flags != TMSUCCESS) return XAER_INVAL;
    return xa(rmid, "END", x, "");
}

static int p_prepare(XID* x, int rmid, long flags) {
    if (flags != TMNOFLAGS) return XAER_INVAL;
    return xa(rmid, "PREPARE", x, "");
}

static int p_commit(XID* x, int rmid, long flags) {
    if (flags & ~(TMONEPHASE | TMNOWAIT)) return XAER_INVAL;
    return xa(rmid, "COMMIT", x, (flags & TMONEPHASE) ? " ONE PHASE" : "");
}

static int p_rollback(XID* x, int rmid, long flags) {
    if (flags != TMNOFLAGS) return XAER_INVAL;
    return xa(rmid, "ROLLBACK", x, "");
}

static int p_recover(XID* xids, long count, int rmid, long flags) {
    MYSQL* c = conn_of(rmid);
    if (c == NULL) return XAER_PROTO;
    if (count < 0 || (xids == NULL && count > 0) || (flags & ~(TMSTARTRSCAN | TMENDRSCAN)) != 0)
        return XAER_INVAL;
    if (flags & TMSTARTRSCAN) {
        free(scan);
        scan = NULL;
        scan_n = scan_pos = 0;
        if (my_query(c, "XA RECOVER", 10) != 0) return code_of(my_errno(c));
        MYSQL_RES* res = my_store(c);
        if (res == NULL) return XAER_RMERR;
        for (char** row; (row = my_fetch_row(res)) != NULL;) {
            const unsigned long* len = my_lengths(res);
            XID x;
            memset(&x, 0, sizeof x);
            x.formatID = atol(row[0]);
            x.gtrid_length = atol(row[1]);
            x.bqual_length = atol(row[2]);
            if (len[3] > sizeof x.data) continue;
            memcpy(x.data, row[3], len[3]);
            XID* grown = realloc(scan, (size_t)(scan_n + 1) * sizeof(XID));
            if (grown == NULL) break;
            scan = grown;
            scan[scan_n++] = x;
        }
        my_free(res);
    } else if (scan == NULL) {
        return XAER_PROTO;
    }
    long n = 0;
    for (; n < count && scan_pos < scan_n; ++n) xids[n] = scan[scan_pos++];
    if (flags & TMENDRSCAN) {
        free(scan);
        scan = NULL;
    }
    return (int)n;
}

static int p_forget(XID* x, int rmid, long flags) {
    (void)rmid;
    if (flags != TMNOFLAGS || x == NULL) return XAER_INVAL;
    return XAER_NOTA;
}

static int p_complete(int* handle, int* retval, int rmid, long flags) {
    (void)rmid;
    (void)retval;
    if (flags != TMNOFLAGS || handle == NULL) return XAER_INVAL;
    return XAER_PROTO;
}

EXPORT struct xa_switch_t plain_my_switch = {
    "plain_my", TMNOMIGRATE, 0,        p_open,    p_close,  p_start,    p_end,
    p_rollback, p_prepare,   p_commit, p_recover, p_forget, p_complete,
};

EXPORT struct xa_switch_t* lixa_get_xa_switch(void) {
    return &plain_my_switch;
}

EXPORT MYSQL* plain_my_conn(int rmid) {
    return conn_of(rmid);
}
