// hiredis 0.14 (Debian libhiredis-dev). Only the Redis module imports this.
// redisCommand is C-variadic and cannot be called from Swift: use redisCommandArgv.
#ifndef PAYFLEET_CHIREDIS_SHIM_H
#define PAYFLEET_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
