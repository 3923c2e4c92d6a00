// libpq 15 (Debian libpq-dev). Only the Postgres module imports this.
#ifndef PAYFLEET_CLIBPQ_SHIM_H
#define PAYFLEET_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>

// PG_DIAG_* are character-literal macros; give Swift plain integers.
static inline int cpq_diag_sqlstate(void) { return PG_DIAG_SQLSTATE; }
static inline int cpq_diag_message_primary(void) { return PG_DIAG_MESSAGE_PRIMARY; }
static inline int cpq_diag_message_detail(void) { return PG_DIAG_MESSAGE_DETAIL; }
static inline int cpq_diag_message_hint(void) { return PG_DIAG_MESSAGE_HINT; }
static inline int cpq_diag_constraint_name(void) { return PG_DIAG_CONSTRAINT_NAME; }
static inline int cpq_diag_table_name(void) { return PG_DIAG_TABLE_NAME; }
static inline int cpq_diag_severity(void) { return PG_DIAG_SEVERITY_NONLOCALIZED; }

// epoll for the connections' event loop (`SocketReactor`): `struct epoll_event` is packed on
// x86-64, so Swift is given plain arguments instead of the struct.

/// Arms `fd` for one readiness report (`EPOLLONESHOT`): readable, or also writable when `writable`
/// is set. Adds the fd the first time (or after it was closed and its number reused); 0 or -errno.
static inline int cpq_epoll_arm(int epfd, int fd, int writable) {
    struct epoll_event event;
    event.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT | (writable ? EPOLLOUT : 0);
    event.data.u64 = 0;
    event.data.fd = fd;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event) == 0) return 0;
    if (errno != ENOENT) return -errno;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) == 0) return 0;
    if (errno != EEXIST) return -errno;
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event) == 0 ? 0 : -errno;
}

/// Waits for readiness reports; writes up to `max` ready fds into `fds`. The count, or -errno.
static inline int cpq_epoll_wait(int epfd, int *fds, int max) {
    struct epoll_event events[64];
    if (max > 64) max = 64;
    int count = epoll_wait(epfd, events, max, -1);
    if (count < 0) return -errno;
    for (int i = 0; i < count; i++) fds[i] = events[i].data.fd;
    return count;
}

static inline int cpq_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

#endif
