/*
 * xarm.h -- C extras exported by every xarm driver library, beside its xa_switch_t.
 * The structure only ever grows at the end; xarm_diag_version says which fields exist.
 */
#ifndef XARM_XARM_H
#define XARM_XARM_H

#include "xarm/export.h"
#include "xarm/xa.h"

#ifdef __cplusplus
extern "C" {
#endif

#define XARM_DIAG_MESSAGE_SIZE 512

/* The last failure of the calling thread on one rmid. */
struct xarm_diag {
    int xa_code;      /* the XA code the failing call returned */
    char sqlstate[6]; /* SQLSTATE, 5 characters and NUL; "00000" when none applies */
    long native_code; /* the database's own error number, 0 when none */
    char message[XARM_DIAG_MESSAGE_SIZE]; /* what went wrong; never contains a password */
};

/*
 * Fills *out with the calling thread's last failure on rmid. Returns 0 when there is
 * one, 1 when the last call on that rmid succeeded (or none was made), -1 when out is
 * NULL.
 */
XARM_API int xarm_last_error(int rmid, struct xarm_diag* out);

#ifdef __cplusplus
}
#endif

#endif /* XARM_XARM_H */
