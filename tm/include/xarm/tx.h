/*
 * tx.h -- the X/Open TX interface (transaction demarcation for C programs) of xarm's
 * transaction manager, libxarm_tm. Names and values are those of the X/Open CAE
 * Specification "Distributed Transaction Processing: The TX (Transaction Demarcation)
 * Specification" (C504), so that a program written for another TX monitor compiles
 * unchanged.
 *
 * The resource managers of a thread come from a configuration file (TOML, see
 * xarm/tm_config.hpp): XARM_TX_CONFIG names the file, XARM_TX_PROFILE (optional) the
 * [profile.NAME] in it. tx_open opens every resource of the profile on the calling
 * thread with rmid 1, 2, ... in the profile's order; the program does its SQL on the
 * thread's native connection for that rmid (xarm_pq_conn(rmid), xarm_mysql_execute(...),
 * or a third-party switch's own accessor). The first tx_open of a process opens the
 * coordinator's decision log and recovers what a previous process left in doubt.
 */
#ifndef XARM_TX_H
#define XARM_TX_H

#include "xarm/export.h"
#include "xarm/xa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* commit_return values */
typedef long COMMIT_RETURN;
#define TX_COMMIT_COMPLETED 0
#define TX_COMMIT_DECISION_LOGGED 1

/* transaction_control values */
typedef long TRANSACTION_CONTROL;
#define TX_UNCHAINED 0
#define TX_CHAINED 1

/* transaction_timeout, in seconds; 0: none */
typedef long TRANSACTION_TIMEOUT;

/* transaction_state values */
typedef long TRANSACTION_STATE;
#define TX_ACTIVE 0
#define TX_TIMEOUT_ROLLBACK_ONLY 1
#define TX_ROLLBACK_ONLY 2

/* filled by tx_info() */
struct tx_info_t {
    XID xid;
    COMMIT_RETURN when_return;
    TRANSACTION_CONTROL transaction_control;
    TRANSACTION_TIMEOUT transaction_timeout;
    TRANSACTION_STATE transaction_state;
};
typedef struct tx_info_t TXINFO;

/* return codes */
#define TX_NOT_SUPPORTED 1     /* the option is not supported */
#define TX_OK 0                /* normal execution */
#define TX_OUTSIDE (-1)        /* a resource manager is in a local transaction */
#define TX_ROLLBACK (-2)       /* the transaction was rolled back */
#define TX_MIXED (-3)          /* partly committed, partly rolled back */
#define TX_HAZARD (-4)         /* may have been partly committed, partly rolled back */
#define TX_PROTOCOL_ERROR (-5) /* called in the wrong state */
#define TX_ERROR (-6)          /* transient error */
#define TX_FAIL (-7)           /* fatal error */
#define TX_EINVAL (-8)         /* invalid argument */
#define TX_COMMITTED (-9)      /* the transaction was heuristically committed */
#define TX_NO_BEGIN (-100)     /* the transaction ended, the next one (chained) did not begin */
#define TX_ROLLBACK_NO_BEGIN (TX_ROLLBACK + TX_NO_BEGIN)
#define TX_MIXED_NO_BEGIN (TX_MIXED + TX_NO_BEGIN)
#define TX_HAZARD_NO_BEGIN (TX_HAZARD + TX_NO_BEGIN)
#define TX_COMMITTED_NO_BEGIN (TX_COMMITTED + TX_NO_BEGIN)

XARM_API int tx_open(void);
XARM_API int tx_close(void);
XARM_API int tx_begin(void);
XARM_API int tx_commit(void);
XARM_API int tx_rollback(void);
XARM_API int tx_info(TXINFO* info);
XARM_API int tx_set_commit_return(COMMIT_RETURN when_return);
XARM_API int tx_set_transaction_control(TRANSACTION_CONTROL control);
XARM_API int tx_set_transaction_timeout(TRANSACTION_TIMEOUT timeout);

/*
 * xarm's extension: what the calling thread's last tx_* call that did not return TX_OK
 * reported (never a password); "" when it succeeded. Valid until the thread's next tx_*
 * call.
 */
XARM_API const char* xarm_tx_message(void);

#ifdef __cplusplus
}
#endif

#endif /* XARM_TX_H */
