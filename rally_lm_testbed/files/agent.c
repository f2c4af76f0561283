/*
 * rally-lm-agent: the workload inside a benchmark guest.
 *
 *   --tcp-echo PORT      TCP echo (RFC 862) for the TCP continuity probe
 *   --udp-echo PORT      UDP echo for the downtime probe
 *   --sink PORT          TCP sink for inbound data streams (counts bytes)
 *   --dirty-mib N        working set the memory dirtier writes over
 *   --dirty-rate MIB_S   how fast it writes (MiB/s); 0 = no dirtying
 *   --disk DEV --disk-fill PCT
 *                        write a pattern over the first PCT % of DEV once
 *
 * Prints "rally-lm-agent: ready" once every service listens, and progress
 * lines prefixed "rally-lm-agent:" on stdout (the guest's console).
 * Static, libc only: it runs from a busybox initramfs or any Linux image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 256
#define PAGE 4096

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double when)
{
    double left = when - now();
    if (left > 0) {
        struct timespec ts = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int listen_on(int type, int port)
{
    int fd = socket(AF_INET, type, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("rally-lm-agent: bind");
        exit(1);
    }
    if (type == SOCK_STREAM)
        listen(fd, 64);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Writes one byte per page over the working set at the requested rate, so
 * every page is dirtied again and again: what pre-copy must keep resending. */
static void dirty_memory(long mib, double rate_mib)
{
    size_t size = (size_t)mib << 20, pages = size / PAGE, page = 0;
    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        perror("rally-lm-agent: mmap");
        exit(1);
    }
    const double tick = 0.01;
    size_t per_tick = (size_t)(rate_mib * 256.0 * tick) + 1; /* 256 pages per MiB */
    unsigned char stamp = 0;
    double next = now();
    printf("rally-lm-agent: dirtying %ld MiB at %.1f MiB/s\n", mib, rate_mib);
    fflush(stdout);
    for (;;) {
        for (size_t i = 0; i < per_tick; i++) {
            mem[page * PAGE] = ++stamp;
            if (++page == pages)
                page = 0;
        }
        next += tick;
        if (now() - next > 1.0)
            next = now();
        sleep_until(next);
    }
}

static void fill_disk(const char *dev, int percent)
{
    int fd = open(dev, O_WRONLY);
    uint64_t size = 0, done = 0;
    static unsigned char block[1 << 20];
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0) {
        printf("rally-lm-agent: cannot fill %s: %s\n", dev, strerror(errno));
        exit(1);
    }
    uint64_t target = size / 100 * percent;
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (unsigned char)(i * 131 + 7);
    while (done < target) {
        size_t len = target - done < sizeof block ? target - done : sizeof block;
        block[0] = (unsigned char)(done >> 20); /* no two blocks alike */
        if (write(fd, block, len) != (ssize_t)len) {
            printf("rally-lm-agent: write to %s failed: %s\n", dev, strerror(errno));
            exit(1);
        }
        done += len;
    }
    fsync(fd);
    printf("rally-lm-agent: filled %llu MiB of %s (%d%%)\n",
           (unsigned long long)(done >> 20), dev, percent);
    exit(0);
}

struct conn {
    int fd;
    int echo; /* 1: echo back, 0: sink */
    char *pending;
    size_t pending_len;
};

static void serve(int tcp_echo, int udp_echo, int sink)
{
    struct pollfd fds[MAX_FDS];
    struct conn conns[MAX_FDS];
    int n = 0;
    static char buf[65536];
    if (tcp_echo) {
        fds[n] = (struct pollfd){listen_on(SOCK_STREAM, tcp_echo), POLLIN, 0};
        conns[n++] = (struct conn){-1, 2, NULL, 0};
    }
    if (udp_echo) {
        fds[n] = (struct pollfd){listen_on(SOCK_DGRAM, udp_echo), POLLIN, 0};
        conns[n++] = (struct conn){-1, 3, NULL, 0};
    }
    if (sink) {
        fds[n] = (struct pollfd){listen_on(SOCK_STREAM, sink), POLLIN, 0};
        conns[n++] = (struct conn){-1, 4, NULL, 0};
    }
    printf("rally-lm-agent: ready tcp-echo=%d udp-echo=%d sink=%d\n", tcp_echo, udp_echo, sink);
    fflush(stdout);
    for (;;) {
        if (poll(fds, n, -1) < 0 && errno != EINTR)
            exit(1);
        for (int i = 0; i < n; i++) {
            if (!fds[i].revents)
                continue;
            struct conn *c = &conns[i];
            if (c->echo == 2 || c->echo == 4) { /* listener */
                int fd = accept(fds[i].fd, NULL, NULL), one = 1;
                if (fd < 0 || n == MAX_FDS) {
                    if (fd >= 0)
                        close(fd);
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                fcntl(fd, F_SETFL, O_NONBLOCK);
                fds[n] = (struct pollfd){fd, POLLIN, 0};
                conns[n++] = (struct conn){fd, c->echo == 2, NULL, 0};
            } else if (c->echo == 3) { /* UDP echo */
                struct sockaddr_in peer;
                socklen_t len = sizeof peer;
                ssize_t got;
                while ((got = recvfrom(fds[i].fd, buf, sizeof buf, 0,
                                       (struct sockaddr *)&peer, &len)) > 0)
                    sendto(fds[i].fd, buf, got, 0, (struct sockaddr *)&peer, len);
            } else { /* a stream connection */
                ssize_t got = 0;
                if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                    got = read(fds[i].fd, buf, sizeof buf);
                    if (got == 0 || (got < 0 && errno != EAGAIN)) {
                        close(fds[i].fd);
                        free(c->pending);
                        fds[i] = fds[n - 1];
                        conns[i] = conns[--n];
                        i--;
                        continue;
                    }
                    if (got > 0 && c->echo) {
                        c->pending = realloc(c->pending, c->pending_len + got);
                        memcpy(c->pending + c->pending_len, buf, got);
                        c->pending_len += got;
                    }
                }
                if (c->pending_len) {
                    ssize_t sent = write(fds[i].fd, c->pending, c->pending_len);
                    if (sent > 0) {
                        memmove(c->pending, c->pending + sent, c->pending_len - sent);
                        c->pending_len -= sent;
                    }
                }
                fds[i].events = POLLIN | (c->pending_len ? POLLOUT : 0);
            }
        }
    }
}

int main(int argc, char **argv)
{
    int tcp_echo = 0, udp_echo = 0, sink = 0, fill = 0;
    long dirty_mib = 0;
    double dirty_rate = 0;
    const char *disk = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tcp-echo")) tcp_echo = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--udp-echo")) udp_echo = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sink")) sink = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dirty-mib")) dirty_mib = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--dirty-rate")) dirty_rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--disk")) disk = argv[i + 1];
        else if (!strcmp(argv[i], "--disk-fill")) fill = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "rally-lm-agent: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);
    if (disk && fill > 0 && fork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fill_disk(disk, fill > 100 ? 100 : fill);
    }
    if (dirty_mib > 0 && dirty_rate > 0 && fork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dirty_memory(dirty_mib, dirty_rate);
    }
    serve(tcp_echo, udp_echo, sink);
    return 0;
}
