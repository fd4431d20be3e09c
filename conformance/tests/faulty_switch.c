/*
 * A deliberately faulty XA switch, for the conformance suite's own tests. It forwards to
 * one of xarm's switches, loaded at run time with RTLD_LOCAL so that nothing of xarm's is
 * visible through this library (to the suite it is a third party: no xarm_last_error, no
 * declaration), and adds the faults a real third-party switch showed:
 *
 *  - a NULL XID pointer or a NULL open string is dereferenced (SIGSEGV);
 *  - a branch the wrapped switch rolled back after a failed statement is reported as
 *    fine: XA_OK from xa_end, xa_prepare and a one-phase xa_commit (PostgreSQL answers
 *    PREPARE TRANSACTION and COMMIT in an aborted block with a ROLLBACK tag and no error;
 *    a switch that checks only for an error believes it);
 *  - xa_recover works only with TMSTARTRSCAN: a continuation page (TMNOFLAGS) is
 *    XAER_INVAL, so a monitor that pages misses branches;
 *  - TMJOIN, TMSUSPEND and TMRESUME are refused with XAER_RMERR, declared nowhere;
 *  - flags TMNOMIGRATE, no TMUSEASYNC;
 *  - with FAULTY_PQ (around xarm's pq switch), every branch counts as one that wrote: it
 *    votes XA_OK, never XA_RDONLY, as a switch without a read-only check (PostgreSQL then
 *    keeps even an empty branch prepared).
 *
 * FAULTY_SWITCH_HANG=<entry> (e.g. xa_forget) makes that entry never return (after
 * "faulty switch: hanging" on stderr).
 * faulty_null_switch has no entry points; faulty_dynamic_switch has TMREGISTER and a name
 * without its terminating NUL. faulty_conn(rmid) is the wrapped switch's connection.
 *
 * Compile with FAULTY_INNER_LIB (path), FAULTY_INNER_SWITCH and FAULTY_INNER_CONN
 * (symbols), e.g. the path of libxarm_pq.so, xarm_pq_switch, xarm_pq_conn.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xarm/xa.h"

#define EXPORT __attribute__((visibility("default")))

static struct xa_switch_t* inner;
static void* (*inner_conn)(int);
#ifdef FAULTY_PQ
/* Gives the branch's transaction an id at xa_start: to the server, it wrote. */
static const char* const write_at_start = "SELECT pg_catalog.pg_current_xact_id()";
static void* (*pq_exec)(void*, const char*);
static void (*pq_clear)(void*);
#endif
static pthread_once_t loaded = PTHREAD_ONCE_INIT;

/* Branches whose rollback this switch has hidden; a small table is enough for the tests. */
#define MAX_HIDDEN 64
static XID hidden[MAX_HIDDEN];
static int n_hidden;
static pthread_mutex_t hidden_mu = PTHREAD_MUTEX_INITIALIZER;

static void load(void) {
    void* h = dlopen(FAULTY_INNER_LIB, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == NULL) return;
    inner = (struct xa_switch_t*)dlsym(h, FAULTY_INNER_SWITCH);
    *(void**)&inner_conn = dlsym(h, FAULTY_INNER_CONN);
#ifdef FAULTY_PQ
    *(void**)&pq_exec = dlsym(h, "PQexec");
    *(void**)&pq_clear = dlsym(h, "PQclear");
#endif
}

static int ready(void) {
    pthread_once(&loaded, load);
    return inner != NULL;
}

static void hang_if(const char* entry) {
    const char* h = getenv("FAULTY_SWITCH_HANG");
    if (h != NULL && strcmp(h, entry) == 0) {
        /* Said on stderr so that a test can signal the run while the call hangs. */
        static const char said[] = "faulty switch: hanging\n";
        ssize_t n = write(STDERR_FILENO, said, sizeof said - 1);
        (void)n;
        for (;;) pause();
    }
}

/* Reads the XID as a switch that never checks for NULL does. */
static long touch(const XID* xid) {
    const volatile XID* p = xid;
    return p->formatID;
}

static int is_rb(int rc) {
    return rc >= XA_RBBASE && rc <= XA_RBEND;
}

static void hide(const XID* xid) {
    pthread_mutex_lock(&hidden_mu);
    if (n_hidden < MAX_HIDDEN) hidden[n_hidden++] = *xid;
    pthread_mutex_unlock(&hidden_mu);
}

static int hidden_rollback(const XID* xid) {
    int found = 0;
    pthread_mutex_lock(&hidden_mu);
    for (int i = 0; i < n_hidden; ++i)
        if (memcmp(&hidden[i], xid, sizeof(XID)) == 0) {
            hidden[i] = hidden[--n_hidden];
            found = 1;
            break;
        }
    pthread_mutex_unlock(&hidden_mu);
    return found;
}

static int f_open(char* info, int rmid, long flags) {
    hang_if("xa_open");
    const volatile char* p = info;
    if (p[0] == '\0') return XAER_INVAL; /* dereferences NULL */
    if (!ready()) return XAER_RMERR;
    return inner->xa_open_entry(info, rmid, flags);
}

static int f_close(char* info, int rmid, long flags) {
    hang_if("xa_close");
    if (!ready()) return XAER_RMERR;
    return inner->xa_close_entry(info, rmid, flags);
}

static int f_start(XID* xid, int rmid, long flags) {
    hang_if("xa_start");
    (void)touch(xid);
    if (!ready()) return XAER_RMERR;
    if (flags & (TMJOIN | TMRESUME)) return XAER_RMERR;
    const int rc = inner->xa_start_entry(xid, rmid, flags);
#ifdef FAULTY_PQ
    if (rc == XA_OK && pq_exec != NULL && inner_conn != NULL && inner_conn(rmid) != NULL)
        pq_clear(pq_exec(inner_conn(rmid), write_at_start));
#endif
    return rc;
}

static int f_end(XID* xid, int rmid, long flags) {
    hang_if("xa_end");
    (void)touch(xid);
    if (!ready()) return XAER_RMERR;
    if (flags & TMSUSPEND) return XAER_RMERR;
    const int rc = inner->xa_end_entry(xid, rmid, flags);
    if (is_rb(rc) && !(flags & TMFAIL)) {
        hide(xid); /* the failed statement goes unnoticed */
        return XA_OK;
    }
    return rc;
}

static int f_prepare(XID* xid, int rmid, long flags) {
    hang_if("xa_prepare");
    (void)touch(xid);
    if (!ready()) return XAER_RMERR;
    const int rc = inner->xa_prepare_entry(xid, rmid, flags);
    if (is_rb(rc) || hidden_rollback(xid)) return XA_OK; /* the false prepare */
    return rc;
}

static int f_commit(XID* xid, int rmid, long flags) {
    hang_if("xa_commit");
    (void)touch(xid);
    if (!ready()) return XAER_RMERR;
    const int rc = inner->xa_commit_entry(xid, rmid, flags);
    if ((flags & TMONEPHASE) && (is_rb(rc) || hidden_rollback(xid))) return XA_OK;
    return rc;
}

static int f_rollback(XID* xid, int rmid, long flags) {
    hang_if("xa_rollback");
    (void)touch(xid);
    if (!ready()) return XAER_RMERR;
    const int rc = inner->xa_rollback_entry(xid, rmid, flags);
    hidden_rollback(xid);
    return rc;
}

static int f_recover(XID* xids, long count, int rmid, long flags) {
    hang_if("xa_recover");
    if (!ready()) return XAER_RMERR;
    if (!(flags & TMSTARTRSCAN)) return XAER_INVAL; /* no paging */
    return inner->xa_recover_entry(xids, count, rmid, flags);
}

static int f_forget(XID* xid, int rmid, long flags) {
    hang_if("xa_forget");
    (void)touch(xid);
    if (!ready()) return XAER_RMERR;
    return inner->xa_forget_entry(xid, rmid, flags);
}

static int f_complete(int* handle, int* retval, int rmid, long flags) {
    hang_if("xa_complete");
    if (!ready()) return XAER_RMERR;
    return inner->xa_complete_entry(handle, retval, rmid, flags);
}

EXPORT struct xa_switch_t faulty_switch = {
    "faulty",   TMNOMIGRATE, 0,        f_open,    f_close,  f_start,    f_end,
    f_rollback, f_prepare,   f_commit, f_recover, f_forget, f_complete,
};

EXPORT struct xa_switch_t* lixa_get_xa_switch(void) {
    return &faulty_switch;
}

EXPORT void* faulty_conn(int rmid) {
    return ready() && inner_conn != NULL ? inner_conn(rmid) : NULL;
}

EXPORT struct xa_switch_t faulty_null_switch = {
    "faulty_null", TMNOMIGRATE, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
};

EXPORT struct xa_switch_t faulty_dynamic_switch = {
    {'f', 'a', 'u', 'l', 't', 'y', '_', 'd', 'y', 'n', 'a', 'm', 'i', 'c', '_', 'x',
     'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'},
    TMREGISTER | TMNOMIGRATE,
    0,
    f_open,
    f_close,
    f_start,
    f_end,
    f_rollback,
    f_prepare,
    f_commit,
    f_recover,
    f_forget,
    f_complete,
};
