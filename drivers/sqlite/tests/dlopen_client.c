/* A transaction monitor's view: knows only xa.h, loads the switch with dlopen and
 * lixa_get_xa_switch, and drives a branch. Exit status 0 when every step answered as
 * expected. Usage: dlopen_client LIBRARY DBFILE */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "xarm/xa.h"

static int failures = 0;
#define EXPECT(call, want)                                                \
    do {                                                                  \
        int rc_ = (call);                                                 \
        if (rc_ != (want)) {                                              \
            fprintf(stderr, "%s: got %d, want %d\n", #call, rc_, (want)); \
            ++failures;                                                   \
        }                                                                 \
    } while (0)

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LIBRARY DBFILE\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    struct xa_switch_t* (*get)(void) = NULL;
    *(void**)(&get) = dlsym(lib, "lixa_get_xa_switch");
    if (get == NULL) {
        fprintf(stderr, "no lixa_get_xa_switch\n");
        return 1;
    }
    struct xa_switch_t* sw = get();
    if (strcmp(sw->name, "xarm_sqlite") != 0 || sw->version != 0) {
        fprintf(stderr, "unexpected switch %s/%ld\n", sw->name, sw->version);
        return 1;
    }
    char info[512];
    snprintf(info, sizeof info, "path='%s'", argv[2]);
    XID x;
    memset(&x, 0, sizeof x);
    x.formatID = 4711;
    x.gtrid_length = 3;
    x.bqual_length = 2;
    memcpy(x.data, "g\0'b\xff", 5);

    EXPECT(sw->xa_open_entry(info, 1, TMNOFLAGS), XA_OK);
    EXPECT(sw->xa_start_entry(&x, 1, TMNOFLAGS), XA_OK);
    EXPECT(sw->xa_end_entry(&x, 1, TMSUCCESS), XA_OK);
    EXPECT(sw->xa_prepare_entry(&x, 1, TMNOFLAGS), XAER_RMERR); /* declared: no two-phase */
    EXPECT(sw->xa_commit_entry(&x, 1, TMONEPHASE), XA_OK);
    XID page[2];
    EXPECT(sw->xa_recover_entry(page, 2, 1, TMSTARTRSCAN | TMENDRSCAN), 0);
    EXPECT(sw->xa_close_entry(info, 1, TMNOFLAGS), XA_OK);
    EXPECT(sw->xa_start_entry(&x, 1, TMNOFLAGS), XAER_PROTO); /* closed */
    if (failures == 0) printf("dlopen_client: all steps answered as the XA specification says\n");
    return failures == 0 ? 0 : 1;
}
