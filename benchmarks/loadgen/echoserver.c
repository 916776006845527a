/*
 * echoserver: the trivial native echo server used to calibrate the load generator.
 *
 * One thread, one edge-triggered epoll set. Each accepted socket is registered once for
 * EPOLLIN|EPOLLOUT; the server reads until the socket is drained and writes every chunk
 * straight back. When
 * the kernel accepts only part of a reply, the rest is parked in a per-connection buffer and
 * reading pauses until the next writable edge drains it, so a slow reader cannot make the
 * server buffer without bound.
 *
 * No Python server can be faster than this one, so a load generator that reports more round
 * trips against it than against every Python peer is fast enough to measure those peers.
 *
 * SPIN_NS, when given, makes the server spend that many nanoseconds of user time on every
 * chunk it reads, before echoing it (a clock_gettime loop: the vDSO, no syscall): a stand-in
 * for a server's own work per message, the same syscalls otherwise. It shows how throughput
 * falls with user time per round trip on the machine at hand, and so what user time per round
 * trip a target ratio leaves a server (BENCHMARKS.md, "Echo: the user-time budget").
 *
 * Usage: echoserver PORT [HOST [SPIN_NS]]   (runs until killed)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

struct peer {
    int fd;
    unsigned char *pending; /* allocated on the first short write */
    size_t off, len;        /* unsent bytes are pending[off, len) */
};

static unsigned char buf[CHUNK];
static long spin_ns; /* user time spent per chunk read; 0: none */

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Burn spin_ns of CPU in user space. */
static void spin(void)
{
    long long until = now_ns() + spin_ns;
    while (now_ns() < until)
        ;
}

static void die(const char *what)
{
    fprintf(stderr, "echoserver: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void drop(struct peer *p)
{
    close(p->fd); /* also removes it from the epoll set */
    free(p->pending);
    free(p);
}

/* Send data[0, n); park what the kernel does not take. Returns 0, or -1 on a dead peer. */
static int send_or_park(struct peer *p, const unsigned char *data, size_t n)
{
    size_t sent = 0;
    while (sent < n) {
        ssize_t w = send(p->fd, data + sent, n - sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            if (!p->pending && !(p->pending = malloc(CHUNK)))
                return -1;
            memmove(p->pending, data + sent, n - sent);
            p->off = 0;
            p->len = n - sent;
            return 0;
        }
        sent += (size_t)w;
    }
    return 0;
}

/* Flush parked bytes, then echo until the socket runs dry. Returns -1 when p must be dropped. */
static int serve(struct peer *p)
{
    while (p->off < p->len) {
        ssize_t w = send(p->fd, p->pending + p->off, p->len - p->off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        p->off += (size_t)w;
    }
    p->off = p->len = 0;
    for (;;) {
        ssize_t n = recv(p->fd, buf, sizeof buf, 0);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        if (spin_ns)
            spin();
        if (send_or_park(p, buf, (size_t)n) < 0)
            return -1;
        if (p->len)
            return 0; /* the writable edge resumes reading */
        /* A short read drained the socket; whatever arrives later raises a new EPOLLIN edge,
         * so skip the recv that would say EAGAIN (libuv, hence uvloop, saves it too). */
        if ((size_t)n < sizeof buf)
            return 0;
    }
}

static void accept_all(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            die("accept4");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct peer *p = calloc(1, sizeof *p);
        if (!p)
            die("calloc");
        p->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = p};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
        if (serve(p) < 0)
            drop(p);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: echoserver PORT [HOST [SPIN_NS]]\n");
        return 1;
    }
    if (argc == 4) {
        char *end;
        spin_ns = strtol(argv[3], &end, 10);
        if (*argv[3] == '\0' || *end != '\0' || spin_ns < 0 || spin_ns > 1000000000L) {
            fprintf(stderr, "echoserver: SPIN_NS must be 0 to 1000000000\n");
            return 1;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (inet_pton(AF_INET, argc >= 3 ? argv[2] : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "echoserver: not an IPv4 address\n");
        return 1;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, 4096) < 0)
        die("listen");

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl");

    struct epoll_event events[1024];
    for (;;) {
        int n = epoll_wait(ep, events, 1024, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct peer *p = events[i].data.ptr;
            if (!p)
                accept_all(ep, lfd);
            else if (serve(p) < 0)
                drop(p);
        }
    }
}
