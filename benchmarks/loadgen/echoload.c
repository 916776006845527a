/*
 * echoload: a closed-loop TCP echo load generator.
 *
 * Opens N connections to HOST:PORT. Each connection sends a message of S bytes, reads back
 * exactly S bytes and immediately sends the next one, so exactly one request per connection is
 * in flight at any time (the echo of a large request is read while the request is still being
 * written). Everything runs in one thread on one edge-triggered epoll set: every socket is
 * registered once for EPOLLIN|EPOLLOUT and tracks its own readiness (set by an edge, cleared by
 * EAGAIN), so no edge is missed and no syscall is spent on a socket known to be dry.
 *
 * The run has three phases: connect (bounded by a connect timeout), warm-up (replies are
 * verified byte by byte, nothing is counted) and measurement (round trips that complete inside
 * the window are counted and their latencies recorded in a log-linear histogram, about 1.5%
 * resolution). The result is printed on stdout as one JSON line.
 *
 * Exit status: 0 on success, 1 on usage errors, 2 when a connection fails (refused, reset,
 * closed by the server, wrong reply), 3 when the hard deadline (alarm) fires.
 *
 * Usage: echoload [-h HOST] -p PORT [-c CONNS] [-s SIZE] [-d SECONDS] [-w SECONDS] [-t SECONDS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- latency histogram: exact below 128 ns, then 64 sub-buckets per power of two ---- */

#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define HIST_LEN (2 * SUB + (64 - SUB_BITS - 1) * SUB)

static uint64_t hist[HIST_LEN];
static uint64_t hist_count;
static uint64_t hist_max;

static size_t bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v);        /* v is in [2^e, 2^(e+1)), e > SUB_BITS */
    int shift = e - SUB_BITS;
    return 2 * SUB + (size_t)(e - SUB_BITS - 1) * SUB + (size_t)((v >> shift) - SUB);
}

/* The middle of a bucket's value range: the value reported for a percentile falling in it. */
static double bucket_mid(size_t idx)
{
    if (idx < 2 * SUB)
        return (double)idx;
    size_t k = idx - 2 * SUB;
    int e = (int)(k / SUB) + SUB_BITS + 1;
    int shift = e - SUB_BITS;
    uint64_t lo = (uint64_t)(k % SUB + SUB) << shift;
    return (double)lo + (double)((uint64_t)1 << shift) / 2.0;
}

static void hist_record(uint64_t ns)
{
    hist[bucket_of(ns)]++;
    hist_count++;
    if (ns > hist_max)
        hist_max = ns;
}

/* The value below which a fraction q of the samples lie, in nanoseconds. */
static double hist_quantile(double q)
{
    if (hist_count == 0)
        return 0.0;
    uint64_t rank = (uint64_t)(q * (double)hist_count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_LEN; i++) {
        seen += hist[i];
        if (seen >= rank) {
            double mid = bucket_mid(i);
            return mid > (double)hist_max ? (double)hist_max : mid;
        }
    }
    return (double)hist_max;
}

/* ---- connections ---- */

struct conn {
    int fd;
    int index;
    int may_send;         /* no EAGAIN from send since the last writable edge */
    int may_recv;         /* a readable edge came and recv has not said EAGAIN since */
    size_t sent;          /* bytes of the current request written */
    size_t received;      /* bytes of its echo read back */
    uint64_t started_ns;  /* when the current request was first offered to the kernel */
    uint64_t measured;    /* round trips completed inside the measurement window */
};

static unsigned char *pattern; /* the request every connection sends */
static unsigned char *scratch; /* where replies land; shared, since only their length matters */
static size_t scratch_len;
static size_t msg_size;
static uint64_t measure_from_ns, measure_until_ns;
static int verifying = 1;      /* warm-up: compare every reply with the request */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "echoload: %s: %s\n", what, strerror(err));
    exit(2);
}

static void conn_fail(const struct conn *c, const char *what)
{
    fprintf(stderr, "echoload: connection %d: %s (%zu of %zu bytes sent, %zu received, %llu"
            " measured round trips)\n", c->index, what, c->sent, msg_size, c->received,
            (unsigned long long)c->measured);
    exit(2);
}

static void conn_fail_errno(const struct conn *c, const char *call, int err)
{
    char what[128];
    snprintf(what, sizeof what, "%s failed: %s", call, strerror(err));
    conn_fail(c, what);
}

static void on_reply(struct conn *c)
{
    uint64_t now = now_ns();
    if (now >= measure_from_ns && now < measure_until_ns) {
        hist_record(now - c->started_ns);
        c->measured++;
    }
    c->sent = 0;
    c->received = 0;
    c->started_ns = now;
    /* The whole echo has been read and the server has nothing more to send, so the socket is
     * empty: skip the recv that would say EAGAIN and wait for the next readable edge. */
    c->may_recv = 0;
}

/* Advance one connection until neither sending nor receiving can make progress. The request
 * is written and its echo read at the same time, so a server that stops reading while its
 * replies are unread (bounded buffers, like the C server or sendall) never deadlocks with us
 * on messages larger than the socket buffers. */
static void drive(struct conn *c)
{
    for (;;) {
        int moved = 0;
        if (c->may_send && c->sent < msg_size) {
            ssize_t n = send(c->fd, pattern + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
            if (n >= 0) {
                c->sent += (size_t)n;
                moved = 1;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->may_send = 0;
            } else if (errno != EINTR) {
                conn_fail_errno(c, "send", errno);
            }
        }
        if (c->may_recv && c->received < c->sent) {
            size_t want = c->sent - c->received;
            if (want > scratch_len)
                want = scratch_len;
            ssize_t n = recv(c->fd, scratch, want, 0);
            if (n > 0) {
                /* Verify during warm-up only: memcmp at 100 KiB would slow measurement. */
                if (verifying && memcmp(scratch, pattern + c->received, (size_t)n) != 0)
                    conn_fail(c, "reply differs from the request");
                c->received += (size_t)n;
                moved = 1;
                if (c->received == msg_size)
                    on_reply(c);
            } else if (n == 0) {
                conn_fail(c, "server closed the connection");
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->may_recv = 0;
            } else if (errno != EINTR) {
                conn_fail_errno(c, "recv", errno);
            }
        }
        if (!moved)
            return;
    }
}

static int open_conn(const struct sockaddr_in *addr, double connect_timeout)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket", errno);
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt(TCP_NODELAY)", errno);
    /* A blocking connect honours SO_SNDTIMEO, which bounds the connect phase. */
    struct timeval tv = {(time_t)connect_timeout,
                         (suseconds_t)((connect_timeout - (double)(time_t)connect_timeout) * 1e6)};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
        die("setsockopt(SO_SNDTIMEO)", errno);
    while (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        if (errno != EINTR)
            die("connect", errno);
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        die("fcntl(O_NONBLOCK)", errno);
    return fd;
}

static void raise_fd_limit(int conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t need = (rlim_t)conns + 32;
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr, "echoload: %d connections need %llu descriptors, hard limit is %llu\n",
                conns, (unsigned long long)need, (unsigned long long)rl.rlim_max);
        exit(1);
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit(RLIMIT_NOFILE)", errno);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "echoload: hard deadline exceeded, giving up\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(3);
}

static void usage(void)
{
    fprintf(stderr, "usage: echoload [-h HOST] -p PORT [-c CONNS] [-s SIZE] [-d SECONDS]"
                    " [-w WARMUP_SECONDS] [-t CONNECT_TIMEOUT]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, conns = 10;
    double duration = 5.0, warmup = 1.0, connect_timeout = 10.0;
    msg_size = 1024;

    int opt;
    while ((opt = getopt(argc, argv, "h:p:c:s:d:w:t:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 's': msg_size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 't': connect_timeout = atof(optarg); break;
        default: usage();
        }
    }
    if (port <= 0 || port > 65535 || conns <= 0 || msg_size == 0 || duration <= 0 || warmup < 0
        || connect_timeout <= 0)
        usage();

    /* Whatever happens (a server that accepts but never answers, a stuck connect), stop. */
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(connect_timeout + warmup + duration) + 5);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "echoload: not an IPv4 address: %s\n", host);
        return 1;
    }

    pattern = malloc(msg_size);
    scratch_len = msg_size < 65536 ? msg_size : 65536;
    scratch = malloc(scratch_len);
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    if (!pattern || !scratch || !cs)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < msg_size; i++)
        pattern[i] = (unsigned char)(i * 131u + i / 251u + 7u);

    raise_fd_limit(conns);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1", errno);
    for (int i = 0; i < conns; i++) {
        cs[i].fd = open_conn(&addr, connect_timeout);
        cs[i].index = i;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = &cs[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
            die("epoll_ctl", errno);
    }

    uint64_t start = now_ns();
    measure_from_ns = start + (uint64_t)(warmup * 1e9);
    measure_until_ns = measure_from_ns + (uint64_t)(duration * 1e9);
    for (int i = 0; i < conns; i++) {
        cs[i].may_send = 1;
        cs[i].started_ns = start;
        drive(&cs[i]);
    }

    struct epoll_event events[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= measure_until_ns)
            break;
        verifying = now < measure_from_ns;
        int timeout_ms = (int)((measure_until_ns - now) / 1000000u) + 1;
        int n = epoll_wait(ep, events, 1024, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait", errno);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & EPOLLIN)
                c->may_recv = 1;
            if (events[i].events & EPOLLOUT)
                c->may_send = 1;
            drive(c);
            /* An echo server never half-closes or errors a live connection. */
            if (events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err)
                    conn_fail_errno(c, "socket error", err);
                conn_fail(c, "server closed the connection");
            }
        }
    }

    int starved = 0;
    for (int i = 0; i < conns; i++) {
        if (cs[i].measured == 0)
            starved++;
        close(cs[i].fd);
    }
    printf("{\"host\": \"%s\", \"port\": %d, \"conns\": %d, \"size\": %zu, \"warmup_s\": %g, "
           "\"duration_s\": %g, \"round_trips\": %llu, \"rps\": %.1f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"max_us\": %.1f, \"starved_conns\": %d}\n",
           host, port, conns, msg_size, warmup, duration, (unsigned long long)hist_count,
           (double)hist_count / duration, hist_quantile(0.50) / 1e3, hist_quantile(0.99) / 1e3,
           (double)hist_max / 1e3, starved);
    return 0;
}
