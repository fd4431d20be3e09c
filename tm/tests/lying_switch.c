/*
 * A deliberately lying XA switch for the transaction manager's tests: it forwards to
 * xarm's pq switch (loaded RTLD_LOCAL: a third party to the manager) and lies as the
 * environment variable LYING_SWITCH says, read at every call:
 *
 *   false_prepare  xa_prepare rolls the branch back and answers XA_OK (a prepare that
 *                  did not happen)
 *   weird_prepare  xa_prepare answers 77, a code outside the XA specification
 *   weird_commit   xa_commit answers 42 and does nothing
 *   retry_commit   xa_commit answers XA_RETRY and does nothing (busy for ever)
 *   heurmix_commit xa_commit commits, then answers XA_HEURMIX
 *   (unset)        honest
 *
 * lying_register_switch has TMREGISTER in its flags; lying_conn(rmid) is the PGconn.
 * Compile with LYING_INNER_LIB (path of libxarm_pq.so).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "xarm/xa.h"

#define EXPORT __attribute__((visibility("default")))

static struct xa_switch_t* inner;
static void* (*inner_conn)(int);
static pthread_once_t loaded = PTHREAD_ONCE_INIT;

static void load(void) {
    void* h = dlopen(LYING_INNER_LIB, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == NULL) return;
    inner = (struct xa_switch_t*)dlsym(h, "xarm_pq_switch");
    *(void**)&inner_conn = dlsym(h, "xarm_pq_conn");
}

static int lie(const char* what) {
    const char* m = getenv("LYING_SWITCH");
    pthread_once(&loaded, load);
    return m != NULL && strcmp(m, what) == 0;
}

static int l_open(char* i, int r, long f) {
    pthread_once(&loaded, load);
    return inner == NULL ? XAER_RMERR : inner->xa_open_entry(i, r, f);
}
static int l_close(char* i, int r, long f) {
    return inner->xa_close_entry(i, r, f);
}
static int l_start(XID* x, int r, long f) {
    return inner->xa_start_entry(x, r, f);
}
static int l_end(XID* x, int r, long f) {
    return inner->xa_end_entry(x, r, f);
}
static int l_rollback(XID* x, int r, long f) {
    return inner->xa_rollback_entry(x, r, f);
}
static int l_prepare(XID* x, int r, long f) {
    if (lie("false_prepare")) {
        (void)inner->xa_rollback_entry(x, r, TMNOFLAGS);
        return XA_OK;
    }
    if (lie("weird_prepare")) return 77;
    return inner->xa_prepare_entry(x, r, f);
}
static int l_commit(XID* x, int r, long f) {
    if (lie("weird_commit")) return 42;
    if (lie("retry_commit")) return XA_RETRY;
    if (lie("heurmix_commit")) {
        (void)inner->xa_commit_entry(x, r, f);
        return XA_HEURMIX;
    }
    return inner->xa_commit_entry(x, r, f);
}
static int l_recover(XID* x, long c, int r, long f) {
    return inner->xa_recover_entry(x, c, r, f);
}
static int l_forget(XID* x, int r, long f) {
    return inner->xa_forget_entry(x, r, f);
}
static int l_complete(int* h, int* v, int r, long f) {
    return inner->xa_complete_entry(h, v, r, f);
}

EXPORT struct xa_switch_t lying_switch = {"lying_pq", TMNOMIGRATE, 0,          l_open,    l_close,
                                          l_start,    l_end,       l_rollback, l_prepare, l_commit,
                                          l_recover,  l_forget,    l_complete};
EXPORT struct xa_switch_t lying_register_switch = {"lying_pq_dynamic",
                                                   TMREGISTER | TMNOMIGRATE,
                                                   0,
                                                   l_open,
                                                   l_close,
                                                   l_start,
                                                   l_end,
                                                   l_rollback,
                                                   l_prepare,
                                                   l_commit,
                                                   l_recover,
                                                   l_forget,
                                                   l_complete};

EXPORT struct xa_switch_t* lixa_get_xa_switch(void) {
    return &lying_switch;
}

EXPORT void* lying_conn(int rmid) {
    pthread_once(&loaded, load);
    return inner_conn == NULL ? NULL : inner_conn(rmid);
}
