/* The load generator's engine: an HTTP/1.1 keep-alive client on epoll, one event loop per thread.
 *
 * Why C: a Python client tops out far below what the servers under test can answer on 2 cores,
 * so it would measure itself. This engine keeps a record of every request (intended start, send,
 * end, status, error) and leaves statistics to Python (testbed/loadgen/stats.py).
 *
 * Modes:
 *   closed  `--connections C`: C connections, each sends its next request when the previous ends.
 *   open    `--rate R`: requests are due at start + k/R whatever the server does; a due request
 *           waits for an idle connection (up to --connections are opened), and its latency counts
 *           from when it was due, so a slow server cannot hide queueing (no coordinated omission).
 *           Due requests still unsent when the run ends are recorded as error 5 (not sent).
 * Bounds: --duration seconds and --requests N (both; whichever comes first), --timeout per request.
 *
 * Output: --out FILE gets one 32-byte record per request (see rec_t); stdout gets a JSON summary.
 * Build: cc -O2 -pthread -o engine engine.c   (testbed/loadgen/engine.py does this and caches it)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { E_OK = 0, E_CONNECT = 1, E_CLOSED = 2, E_TIMEOUT = 3, E_PARSE = 4, E_NOT_SENT = 5 };
enum { C_CLOSED, C_WAIT_RETRY, C_CONNECTING, C_IDLE, C_WRITING, C_READING };

typedef struct {
    int64_t intended_ns; /* when the request was due (open loop) or became sendable (closed loop) */
    int64_t sent_ns;     /* first byte written; -1 if never sent */
    int64_t done_ns;     /* response complete or error noticed */
    int32_t status;      /* HTTP status, 0 when there is none */
    int32_t error;       /* E_* */
} rec_t;

typedef struct {
    int fd, state;
    size_t woff;
    char *rbuf;
    size_t rlen, rcap;
    int hdr_done, chunked, close_after, status, until_eof;
    long content_length;
    size_t body_start, chunk_off;
    int has_req;
    int64_t intended, sent, deadline, retry_at;
} conn_t;

typedef struct {
    int id, nconn;
    double rate; /* per thread, requests per second (open loop) */
    conn_t *conns;
    rec_t *recs;
    size_t nrec, caprec;
    int64_t *pending; /* intended times of due-but-unsent requests (open loop), ring */
    size_t pcap, phead, plen;
    int64_t next_due, interval_ns;
    long connects, connect_errors;
    int busy; /* connections with a request in flight */
    int epfd, tfd;
} thread_t;

static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static char *g_req;
static size_t g_reqlen;
static int g_open_loop;
static int64_t g_end_ns, g_timeout_ns, g_start_ns;
static long g_max_requests;
static atomic_long g_issued;
static int64_t g_t0;
static int g_threads;

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - g_t0;
}

static void die(const char *msg) {
    fprintf(stderr, "engine: %s\n", msg);
    exit(2);
}

static int claim_request(void) {
    long n = atomic_fetch_add(&g_issued, 1);
    if (n >= g_max_requests) {
        atomic_fetch_sub(&g_issued, 1);
        return 0;
    }
    return 1;
}

static void record(thread_t *t, int64_t intended, int64_t sent, int64_t done, int status, int error) {
    if (t->nrec == t->caprec) {
        t->caprec = t->caprec ? t->caprec * 2 : 4096;
        t->recs = realloc(t->recs, t->caprec * sizeof(rec_t));
        if (!t->recs) die("out of memory for records");
    }
    rec_t *r = &t->recs[t->nrec++];
    r->intended_ns = intended;
    r->sent_ns = sent;
    r->done_ns = done;
    r->status = status;
    r->error = error;
}

static void conn_reset_parse(conn_t *c) {
    c->rlen = 0;
    c->hdr_done = c->chunked = c->close_after = c->status = c->until_eof = 0;
    c->content_length = -1;
    c->body_start = c->chunk_off = 0;
}

static void conn_close(thread_t *t, conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_CLOSED;
    conn_reset_parse(c);
}

static void set_events(thread_t *t, conn_t *c, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

/* Start connecting; the connection is writable (EPOLLOUT) once connected. */
static int conn_open(thread_t *t, conn_t *c) {
    int fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    t->connects++;
    if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    conn_reset_parse(c);
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &e);
    return 0;
}

static void try_write(thread_t *t, conn_t *c);

/* Give connection c a request due at `intended`; open it first if needed. */
static void assign(thread_t *t, conn_t *c, int64_t intended) {
    c->has_req = 1;
    t->busy++;
    c->intended = intended;
    c->sent = -1;
    c->deadline = now_ns() + g_timeout_ns;
    c->woff = 0;
    if (c->fd < 0) {
        if (conn_open(t, c) < 0) {
            t->connect_errors++;
            record(t, intended, -1, now_ns(), 0, E_CONNECT);
            c->has_req = 0;
            t->busy--;
            c->state = C_WAIT_RETRY;
            c->retry_at = now_ns() + 1000000; /* 1 ms: a refused port must not spin the loop */
            return;
        }
        return; /* written when connected */
    }
    c->state = C_WRITING;
    try_write(t, c);
}

/* Record the failed request and park the connection; the loop's sweep reopens it (no recursion,
 * and a refused port waits 1 ms between attempts instead of spinning). */
static void fail(thread_t *t, conn_t *c, int error) {
    if (c->has_req) {
        record(t, c->intended, c->sent, now_ns(), c->status, error);
        t->busy--;
    }
    c->has_req = 0;
    if (error == E_CONNECT) t->connect_errors++;
    conn_close(t, c);
    c->state = C_WAIT_RETRY;
    c->retry_at = now_ns() + (error == E_CONNECT ? 1000000 : 0);
}

static void try_write(thread_t *t, conn_t *c) {
    if (c->sent < 0) c->sent = now_ns();
    while (c->woff < g_reqlen) {
        ssize_t n = send(c->fd, g_req + c->woff, g_reqlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(t, c, EPOLLOUT);
            c->state = C_WRITING;
            return;
        }
        fail(t, c, E_CLOSED);
        return;
    }
    c->state = C_READING;
    set_events(t, c, EPOLLIN);
}

static const char *find_crlfcrlf(const char *s, size_t n) {
    return memmem(s, n, "\r\n\r\n", 4);
}

/* 1: response complete, 0: need more bytes, -1: malformed. */
static int parse(conn_t *c, int eof) {
    if (!c->hdr_done) {
        const char *end = find_crlfcrlf(c->rbuf, c->rlen);
        if (!end) return (c->rlen > (1 << 20)) ? -1 : 0;
        if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.", 7) != 0) return -1;
        c->status = atoi(c->rbuf + 9);
        if (c->status < 100 || c->status > 999) return -1;
        const char *line = memchr(c->rbuf, '\n', (size_t)(end - c->rbuf)) + 1;
        while (line < end + 2) {
            const char *eol = memchr(line, '\n', (size_t)(end + 4 - line));
            if (!eol) break;
            size_t len = (size_t)(eol - line);
            if (len > 15 && strncasecmp(line, "content-length:", 15) == 0) {
                c->content_length = strtol(line + 15, NULL, 10);
            } else if (len > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
                if (memmem(line, len, "chunked", 7)) c->chunked = 1;
            } else if (len > 11 && strncasecmp(line, "connection:", 11) == 0) {
                if (memmem(line, len, "close", 5) || memmem(line, len, "Close", 5)) c->close_after = 1;
            }
            line = eol + 1;
        }
        c->hdr_done = 1;
        c->body_start = (size_t)(end - c->rbuf) + 4;
        c->chunk_off = c->body_start;
        if (c->status == 204 || c->status == 304 || c->status < 200) c->content_length = 0;
        else if (!c->chunked && c->content_length < 0) c->until_eof = c->close_after = 1;
    }
    if (c->chunked) {
        for (;;) {
            char *p = c->rbuf + c->chunk_off;
            size_t avail = c->rlen - c->chunk_off;
            char *eol = memmem(p, avail, "\r\n", 2);
            if (!eol) return 0;
            long size = strtol(p, NULL, 16);
            if (size < 0) return -1;
            size_t data = (size_t)(eol + 2 - c->rbuf);
            if (size == 0) {
                /* last chunk: optional trailers, then an empty line */
                if (c->rlen >= data + 2 && memcmp(c->rbuf + data, "\r\n", 2) == 0) return 1;
                return find_crlfcrlf(c->rbuf + data - 2, c->rlen - data + 2) ? 1 : 0;
            }
            if (c->rlen < data + (size_t)size + 2) return 0;
            c->chunk_off = data + (size_t)size + 2;
        }
    }
    if (c->until_eof) return eof ? 1 : 0;
    return (c->rlen - c->body_start >= (size_t)c->content_length) ? 1 : 0;
}

static void next_request(thread_t *t, conn_t *c);

static void on_readable(thread_t *t, conn_t *c) {
    for (;;) {
        if (c->rcap - c->rlen < 4096) {
            c->rcap *= 2;
            c->rbuf = realloc(c->rbuf, c->rcap);
            if (!c->rbuf) die("out of memory for a response");
        }
        size_t space = c->rcap - c->rlen - 1;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, space, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            if ((size_t)n < space) break; /* drained for now */
            continue;
        }
        if (n == 0) { /* EOF */
            if (c->has_req && c->hdr_done && parse(c, 1) == 1) goto complete;
            fail(t, c, E_CLOSED); /* an idle keep-alive connection closed by the server: no record */
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        fail(t, c, E_CLOSED);
        return;
    }
    if (!c->has_req) return;
    int r = parse(c, 0);
    if (r == 0) return;
    if (r < 0) {
        fail(t, c, E_PARSE);
        return;
    }
complete:
    record(t, c->intended, c->sent, now_ns(), c->status, E_OK);
    c->has_req = 0;
    t->busy--;
    if (c->close_after) conn_close(t, c);
    else {
        conn_reset_parse(c);
        c->state = C_IDLE;
    }
    next_request(t, c);
}

static void pending_push(thread_t *t, int64_t when) {
    if (t->plen == t->pcap) {
        size_t ncap = t->pcap ? t->pcap * 2 : 1024;
        int64_t *np = malloc(ncap * sizeof *np);
        if (!np) die("out of memory for the open-loop backlog");
        for (size_t i = 0; i < t->plen; i++) np[i] = t->pending[(t->phead + i) % t->pcap];
        free(t->pending);
        t->pending = np;
        t->phead = 0;
        t->pcap = ncap;
    }
    t->pending[(t->phead + t->plen) % t->pcap] = when;
    t->plen++;
}

static int64_t pending_pop(thread_t *t) {
    int64_t v = t->pending[t->phead];
    t->phead = (t->phead + 1) % t->pcap;
    t->plen--;
    return v;
}

/* Connection c is free: closed loop sends again; open loop takes the oldest due request. */
static void next_request(thread_t *t, conn_t *c) {
    if (c->has_req) return;
    int64_t now = now_ns();
    if (g_open_loop) {
        if (t->plen && now < g_end_ns) assign(t, c, pending_pop(t));
        return;
    }
    if (now >= g_end_ns || !claim_request()) return;
    assign(t, c, now);
}

/* Open loop: move every request due by now into the backlog, then hand the backlog to idle connections. */
static void schedule_due(thread_t *t, int64_t now) {
    while (t->next_due <= now && t->next_due < g_end_ns) {
        if (!claim_request()) {
            t->next_due = INT64_MAX;
            break;
        }
        pending_push(t, t->next_due);
        t->next_due += t->interval_ns;
    }
    for (int i = 0; i < t->nconn && t->plen && now < g_end_ns; i++) {
        conn_t *c = &t->conns[i];
        if (!c->has_req && (c->state == C_IDLE || c->state == C_CLOSED)) {
            c->state = C_IDLE;
            assign(t, c, pending_pop(t));
        }
    }
}

static void arm_timer(thread_t *t, int64_t at) {
    struct itimerspec its = {0};
    int64_t abs_ns = at + g_t0;
    its.it_value.tv_sec = abs_ns / 1000000000LL;
    its.it_value.tv_nsec = abs_ns % 1000000000LL;
    timerfd_settime(t->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void *thread_main(void *arg) {
    thread_t *t = arg;
    struct epoll_event evs[256];
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event te = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->tfd, &te);
    for (int i = 0; i < t->nconn; i++) {
        conn_t *c = &t->conns[i];
        c->fd = -1;
        c->rcap = 16384;
        c->rbuf = malloc(c->rcap);
        conn_reset_parse(c);
    }
    if (g_open_loop) {
        t->interval_ns = (int64_t)(1e9 / t->rate);
        /* stagger threads so their schedules interleave instead of coinciding */
        t->next_due = g_start_ns + (t->interval_ns * t->id) / g_threads;
        /* connect before the first request is due, so connecting is not counted as latency */
        for (int i = 0; i < t->nconn; i++)
            if (conn_open(t, &t->conns[i]) < 0) t->conns[i].state = C_CLOSED;
    } else {
        for (int i = 0; i < t->nconn; i++) next_request(t, &t->conns[i]);
    }
    int64_t last_sweep = 0;
    for (;;) {
        int64_t now = now_ns();
        if (g_open_loop) {
            schedule_due(t, now);
            if (t->next_due < g_end_ns) arm_timer(t, t->next_due);
        }
        int busy = t->busy;
        if (now >= g_end_ns && busy == 0) break;
        if (now >= g_end_ns + g_timeout_ns) break;
        if (!g_open_loop && busy == 0 && now < g_end_ns) {
            /* closed loop with every connection waiting for a retry or out of request quota */
            int waiting = 0;
            for (int i = 0; i < t->nconn; i++) waiting += t->conns[i].state == C_WAIT_RETRY;
            if (!waiting && atomic_load(&g_issued) >= g_max_requests) break;
        }
        if (g_open_loop && t->next_due == INT64_MAX && t->plen == 0 && busy == 0) break;
        int n = epoll_wait(t->epfd, evs, 256, 5);
        now = now_ns();
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (!c) { /* timer */
                uint64_t x;
                if (read(t->tfd, &x, sizeof x) < 0) { /* spurious */ }
                continue;
            }
            if (c->fd < 0) continue;
            uint32_t ev = evs[k].events;
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err || (ev & (EPOLLERR | EPOLLHUP))) {
                    fail(t, c, E_CONNECT);
                    continue;
                }
                if (c->has_req) {
                    c->state = C_WRITING;
                    try_write(t, c);
                } else {
                    c->state = C_IDLE;
                    set_events(t, c, EPOLLIN);
                }
                continue;
            }
            if (c->state == C_WRITING && (ev & EPOLLOUT)) {
                try_write(t, c);
                continue;
            }
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(t, c);
        }
        /* per-request timeouts, retries of failed connections */
        if (now - last_sweep < 2000000 && n > 0) continue;
        last_sweep = now;
        for (int i = 0; i < t->nconn; i++) {
            conn_t *c = &t->conns[i];
            if (c->has_req && now > c->deadline) {
                fail(t, c, E_TIMEOUT);
            } else if (c->state == C_WAIT_RETRY && now >= c->retry_at) {
                c->state = C_CLOSED;
                next_request(t, c);
            }
        }
    }
    /* whatever is still in flight or due-but-unsent is recorded, never dropped */
    int64_t end = now_ns();
    for (int i = 0; i < t->nconn; i++) {
        conn_t *c = &t->conns[i];
        if (c->has_req) record(t, c->intended, c->sent, end, c->status, E_TIMEOUT);
        c->has_req = 0;
        conn_close(t, c);
        free(c->rbuf);
    }
    while (t->plen) record(t, pending_pop(t), -1, end, 0, E_NOT_SENT);
    close(t->tfd);
    close(t->epfd);
    return NULL;
}

static void usage(void) {
    fprintf(stderr,
            "usage: engine --host H --port P [--path /] [--method GET] [--body-file F] [--header 'K: V']...\n"
            "              (--connections C | --rate R --connections MAX) --duration S [--requests N]\n"
            "              [--timeout S] [--threads T] --out FILE\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = NULL, *port = NULL, *path = "/", *method = "GET", *body_file = NULL, *out = NULL;
    char headers[8192] = "";
    int conns = 1, threads = 1;
    double rate = 0, duration = 10, timeout = 10;
    long requests = 1L << 40;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = v;
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--body-file")) body_file = v;
        else if (!strcmp(a, "--header")) {
            if (strlen(headers) + strlen(v) + 3 >= sizeof headers) die("headers too long");
            strcat(headers, v);
            strcat(headers, "\r\n");
        } else if (!strcmp(a, "--connections")) conns = atoi(v);
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--requests")) requests = atol(v);
        else if (!strcmp(a, "--timeout")) timeout = atof(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--out")) out = v;
        else usage();
    }
    if (!host || !port || !out || conns < 1 || threads < 1 || duration <= 0 || requests < 1) usage();
    signal(SIGPIPE, SIG_IGN);

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) die("host must be a numeric address, port a number");
    memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
    g_addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    char *body = NULL;
    size_t body_len = 0;
    if (body_file) {
        FILE *f = fopen(body_file, "rb");
        if (!f) die("cannot open --body-file");
        fseek(f, 0, SEEK_END);
        body_len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        body = malloc(body_len + 1);
        if (fread(body, 1, body_len, f) != body_len) die("cannot read --body-file");
        fclose(f);
    }
    int ipv6 = strchr(host, ':') != NULL;
    size_t cap = strlen(method) + strlen(path) + strlen(host) + strlen(headers) + body_len + 256;
    g_req = malloc(cap);
    int hl = snprintf(g_req, cap, "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\n%s", method, path, ipv6 ? "[" : "", host,
                      ipv6 ? "]" : "", port, headers);
    if (body_file) hl += snprintf(g_req + hl, cap - (size_t)hl, "Content-Length: %zu\r\n", body_len);
    hl += snprintf(g_req + hl, cap - (size_t)hl, "\r\n");
    if (body_len) memcpy(g_req + hl, body, body_len);
    g_reqlen = (size_t)hl + body_len;

    g_open_loop = rate > 0;
    g_max_requests = requests;
    g_timeout_ns = (int64_t)(timeout * 1e9);
    if (threads > conns) threads = conns;
    g_threads = threads;
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    g_t0 = (int64_t)ts0.tv_sec * 1000000000LL + ts0.tv_nsec;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    g_start_ns = 0;
    g_end_ns = (int64_t)(duration * 1e9);

    thread_t *ts = calloc((size_t)threads, sizeof *ts);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    for (int i = 0; i < threads; i++) {
        ts[i].id = i;
        ts[i].nconn = conns / threads + (i < conns % threads);
        ts[i].conns = calloc((size_t)ts[i].nconn, sizeof(conn_t));
        ts[i].rate = rate / threads;
        pthread_create(&tids[i], NULL, thread_main, &ts[i]);
    }
    long total = 0, connects = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += (long)ts[i].nrec;
        connects += ts[i].connects;
    }
    int64_t elapsed = now_ns();
    FILE *f = fopen(out, "wb");
    if (!f) die("cannot write --out");
    for (int i = 0; i < threads; i++)
        if (ts[i].nrec && fwrite(ts[i].recs, sizeof(rec_t), ts[i].nrec, f) != ts[i].nrec) die("short write");
    fclose(f);
    printf("{\"records\": %ld, \"threads\": %d, \"connections\": %d, \"connects\": %ld, \"mode\": \"%s\", "
           "\"rate\": %.3f, \"window_ns\": %lld, \"elapsed_ns\": %lld, \"start_unix_ns\": %lld, "
           "\"request_bytes\": %zu}\n",
           total, threads, conns, connects, g_open_loop ? "open" : "closed", rate, (long long)g_end_ns,
           (long long)elapsed, (long long)wall.tv_sec * 1000000000LL + wall.tv_nsec, g_reqlen);
    for (int i = 0; i < threads; i++) {
        free(ts[i].recs);
        free(ts[i].conns);
        free(ts[i].pending);
    }
    free(ts);
    free(tids);
    free(g_req);
    free(body);
    return 0;
}
