// libpq 15 (Debian libpq-dev). Only the Postgres module imports this.
#ifndef PAYFLEET_CLIBPQ_SHIM_H
#define PAYFLEET_CLIBPQ_SHIM_H
#include <libpq-fe.h>

// PG_DIAG_* are character-literal macros; give Swift plain integers.
static inline int cpq_diag_sqlstate(void) { return PG_DIAG_SQLSTATE; }
static inline int cpq_diag_message_primary(void) { return PG_DIAG_MESSAGE_PRIMARY; }
static inline int cpq_diag_message_detail(void) { return PG_DIAG_MESSAGE_DETAIL; }
static inline int cpq_diag_message_hint(void) { return PG_DIAG_MESSAGE_HINT; }
static inline int cpq_diag_constraint_name(void) { return PG_DIAG_CONSTRAINT_NAME; }
static inline int cpq_diag_table_name(void) { return PG_DIAG_TABLE_NAME; }
static inline int cpq_diag_severity(void) { return PG_DIAG_SEVERITY_NONLOCALIZED; }

#endif
