/*
 * rally-lm-agent: the workload inside a benchmark guest (C edition, for the
 * testbed's tiny image; rally_lm/workload/agent.py is the same agent for
 * images with Python; docs/agent.md is their contract).
 *
 *   --tcp-echo PORT      TCP echo (RFC 862) for the TCP continuity probe
 *   --udp-echo PORT      UDP echo for the downtime probe
 *   --sink PORT          TCP sink for inbound data streams (counts bytes)
 *   --dirty-mib N        working set the memory dirtier writes over
 *   --dirty-rate MIB_S   how fast it writes (MiB/s); 0 = no dirtying
 *   --fill-path DIR --disk-fill PCT
 *                        fill the filesystem holding DIR with files until it
 *                        is PCT % used (at most 95 %, never its last 64 MiB)
 *   --disk DEV --disk-fill PCT
 *                        write a pattern over the first PCT % of a dedicated
 *                        data device; refused while anything uses DEV
 *   --status-every S     a status line every S seconds (default 10)
 *   --tx-checksum-offload off
 *                        before listening, turn off TX checksum offload on
 *                        every interface but loopback (SIOCETHTOOL): the
 *                        guest's kernel then fills its own TCP/UDP checksums
 *
 * Prints "rally-lm-agent: ready" once every service listens, and
 * "rally-lm-agent: status {json}" lines, on stdout (the guest's console).
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
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <linux/ethtool.h>
#include <linux/fs.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 256
#define PAGE 4096
#define MIB (1 << 20)
#define FILL_CEILING_PERCENT 95
#define FILL_RESERVE (64ULL * MIB)
#define FILL_CHUNK (16 * MIB)

/* Counters shared by the forked workers and the server (MAP_SHARED). */
struct status {
    volatile unsigned long long udp_echoes, tcp_echo_bytes, sink_bytes;
    volatile double dirtied_mib, disk_written_mib, disk_used_percent;
    volatile int disk_state; /* 0 idle, 1 filling, 2 done, 3 refused */
    volatile int memory_state; /* 0 idle, 1 dirtying, 2 mmap failed, 3 dirtier gone */
    volatile int memory_errno;
};
/* The memory dirtier's pid: the reporter notices when it is gone (the OOM
 * killer ends it without a word), so an idle guest never reads as loaded. */
static pid_t dirtier = -1;
static struct status *status;

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
 * every page is dirtied again and again: what pre-copy must keep resending.
 * The byte is the pass number, so every pass changes every page's content:
 * QEMU's dirty-rate sampling (virsh domdirtyrate-calc) compares page hashes,
 * and a byte that came back the same each pass (a per-write counter over a
 * working set of whole MiB, 256 pages each) read as a clean guest. */
static void dirty_memory(long mib, double rate_mib)
{
    size_t size = (size_t)mib << 20, pages = size / PAGE, page = 0;
    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        status->memory_errno = errno;
        status->memory_state = 2;
        perror("rally-lm-agent: mmap");
        exit(1);
    }
    status->memory_state = 1;
    const double tick = 0.01;
    size_t per_tick = (size_t)(rate_mib * 256.0 * tick) + 1; /* 256 pages per MiB */
    unsigned long pass = 1;
    double next = now();
    printf("rally-lm-agent: dirtying %ld MiB at %.1f MiB/s\n", mib, rate_mib);
    fflush(stdout);
    for (;;) {
        for (size_t i = 0; i < per_tick; i++) {
            mem[page * PAGE] = (unsigned char)pass;
            if (++page == pages) {
                page = 0;
                pass++;
            }
        }
        status->dirtied_mib += (double)per_tick * PAGE / MIB;
        next += tick;
        if (now() - next > 1.0)
            next = now();
        sleep_until(next);
    }
}

/* Why a block device must not be written raw ("" when it is free to use). */
static const char *device_in_use(const char *dev, char *why, size_t len)
{
    char real[4096], line[8192], src[4096], where[4096];
    if (!realpath(dev, real))
        snprintf(real, sizeof real, "%s", dev);
    const char *name = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
    FILE *f = fopen("/proc/mounts", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%4095s %4095s", src, where) == 2 &&
            !strncmp(src, real, strlen(real))) { /* the device or a partition of it */
            snprintf(why, len, "%s holds the filesystem mounted on %s", src, where);
            fclose(f);
            return why;
        }
    }
    if (f)
        fclose(f);
    f = fopen("/proc/swaps", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%4095s", src) == 1 && !strncmp(src, real, strlen(real))) {
            snprintf(why, len, "%s is a swap device", src);
            fclose(f);
            return why;
        }
    }
    if (f)
        fclose(f);
    (void)name;
    why[0] = 0;
    return why;
}

static void fill_device(const char *dev, int percent)
{
    char why[8300];
    uint64_t size = 0, done = 0;
    static unsigned char block[1 << 20];
    if (*device_in_use(dev, why, sizeof why)) {
        status->disk_state = 3;
        printf("rally-lm-agent: refusing to write %s raw: %s\n", dev, why);
        fflush(stdout);
        exit(1);
    }
    /* O_EXCL on a block device: the kernel refuses it while anything uses it. */
    int fd = open(dev, O_WRONLY | O_EXCL);
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0) {
        status->disk_state = 3;
        printf("rally-lm-agent: cannot fill %s: %s\n", dev, strerror(errno));
        fflush(stdout);
        exit(1);
    }
    uint64_t target = size * (uint64_t)percent / 100;
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (unsigned char)(i * 131 + 7);
    status->disk_state = 1;
    while (done < target) {
        size_t len = target - done < sizeof block ? target - done : sizeof block;
        block[0] = (unsigned char)(done >> 20); /* no two blocks alike */
        if (write(fd, block, len) != (ssize_t)len) {
            printf("rally-lm-agent: write to %s failed: %s\n", dev, strerror(errno));
            exit(1);
        }
        done += len;
        status->disk_written_mib += (double)len / MIB;
    }
    fsync(fd);
    status->disk_state = 2;
    printf("rally-lm-agent: filled %llu MiB of %s (%d%%)\n",
           (unsigned long long)(done >> 20), dev, percent);
    fflush(stdout);
    exit(0);
}

static double used_percent(const char *path, unsigned long long *free_bytes)
{
    struct statvfs st;
    if (statvfs(path, &st) < 0 || !st.f_blocks)
        return 100.0;
    unsigned long long total = (unsigned long long)st.f_blocks * st.f_frsize;
    *free_bytes = (unsigned long long)st.f_bavail * st.f_frsize;
    return 100.0 * (double)(total - *free_bytes) / (double)total;
}

static void fill_files(const char *path, int percent)
{
    static unsigned char block[FILL_CHUNK];
    char folder[4096], name[4200];
    unsigned long long free_bytes = 0;
    int target = percent < FILL_CEILING_PERCENT ? percent : FILL_CEILING_PERCENT;
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        status->disk_state = 3;
        printf("rally-lm-agent: cannot fill %s: not a directory\n", path);
        fflush(stdout);
        exit(1);
    }
    snprintf(folder, sizeof folder, "%s/.rally-lm-fill", path);
    mkdir(folder, 0755);
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (unsigned char)i;
    status->disk_state = 1;
    for (unsigned long long index = 0;; index++) {
        double used = used_percent(path, &free_bytes);
        status->disk_used_percent = used;
        if (used >= target || free_bytes <= FILL_RESERVE + FILL_CHUNK)
            break;
        snprintf(name, sizeof name, "%s/fill-%05llu", folder, index);
        int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        memcpy(block + 8, &index, sizeof index);
        if (fd < 0 || write(fd, block, sizeof block) != (ssize_t)sizeof block) {
            printf("rally-lm-agent: write to %s failed: %s\n", name, strerror(errno));
            exit(1);
        }
        fsync(fd);
        close(fd);
        status->disk_written_mib += (double)FILL_CHUNK / MIB;
    }
    status->disk_used_percent = used_percent(path, &free_bytes);
    status->disk_state = 2;
    printf("rally-lm-agent: filled %s to %.1f%% (asked %d%%)\n", path,
           status->disk_used_percent, percent);
    fflush(stdout);
    exit(0);
}

static void report(double every)
{
    static const char *states[] = {"idle", "filling", "done", "refused"};
    double started = now();
    char memory[160];
    for (;;) {
        struct timespec ts = {(time_t)every, (long)((every - (time_t)every) * 1e9)};
        nanosleep(&ts, NULL);
        /* SIGCHLD is ignored, so a dead dirtier is reaped at once and its pid is gone. */
        if (dirtier > 0 && status->memory_state < 2 && kill(dirtier, 0) < 0 && errno == ESRCH)
            status->memory_state = 3;
        if (status->memory_state == 2)
            snprintf(memory, sizeof memory, "failed: mmap: %s", strerror(status->memory_errno));
        else if (status->memory_state == 3)
            snprintf(memory, sizeof memory, "failed: the dirtier was killed (out of memory?)");
        else
            snprintf(memory, sizeof memory, "%s", status->memory_state ? "dirtying" : "idle");
        printf("rally-lm-agent: status {\"dirtied_mib\": %.1f, \"disk\": \"%s\", "
               "\"disk_used_percent\": %.1f, \"disk_written_mib\": %.1f, "
               "\"memory\": \"%s\", "
               "\"sink_bytes\": %llu, \"tcp_echo_bytes\": %llu, \"udp_echoes\": %llu, "
               "\"uptime_s\": %.3f}\n",
               status->dirtied_mib, states[status->disk_state], status->disk_used_percent,
               status->disk_written_mib, memory, status->sink_bytes, status->tcp_echo_bytes,
               status->udp_echoes, now() - started);
        fflush(stdout);
    }
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
                                       (struct sockaddr *)&peer, &len)) > 0) {
                    if (sendto(fds[i].fd, buf, got, 0, (struct sockaddr *)&peer, len) > 0)
                        status->udp_echoes++;
                }
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
                    } else if (got > 0) {
                        status->sink_bytes += got;
                    }
                }
                if (c->pending_len) {
                    ssize_t sent = write(fds[i].fd, c->pending, c->pending_len);
                    if (sent > 0) {
                        status->tcp_echo_bytes += sent;
                        memmove(c->pending, c->pending + sent, c->pending_len - sent);
                        c->pending_len -= sent;
                    }
                }
                fds[i].events = POLLIN | (c->pending_len ? POLLOUT : 0);
            }
        }
    }
}

static int ethtool_value(int sock, const char *device, unsigned command, unsigned *value)
{
    struct ethtool_value data = {.cmd = command, .data = *value};
    struct ifreq request;
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, sizeof request.ifr_name, "%s", device);
    request.ifr_data = (void *)&data;
    if (ioctl(sock, SIOCETHTOOL, &request) < 0)
        return -1;
    *value = data.data;
    return 0;
}

/* Turn TX checksum offload off on every interface but loopback, saying what was done. */
static void tx_checksum_offload_off(void)
{
    struct if_nameindex *names = if_nameindex();
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    for (struct if_nameindex *n = names; n && n->if_name; n++) {
        unsigned on = 0, off = 0;
        if (!strcmp(n->if_name, "lo"))
            continue;
        if (ethtool_value(sock, n->if_name, ETHTOOL_GTXCSUM, &on) < 0
            || (on && ethtool_value(sock, n->if_name, ETHTOOL_STXCSUM, &off) < 0)
            || ethtool_value(sock, n->if_name, ETHTOOL_GTXCSUM, &on) < 0) {
            printf("rally-lm-agent: could not turn TX checksum offload off on %s: %s\n",
                   n->if_name, strerror(errno));
            continue;
        }
        printf("rally-lm-agent: TX checksum offload %s on %s\n", on ? "still on" : "off",
               n->if_name);
    }
    fflush(stdout);
    if (sock >= 0)
        close(sock);
    if (names)
        if_freenameindex(names);
}

int main(int argc, char **argv)
{
    int tcp_echo = 0, udp_echo = 0, sink = 0, fill = 0;
    long dirty_mib = 0;
    double dirty_rate = 0, status_every = 10;
    const char *disk = NULL, *fill_path = NULL;
    int checksum_off = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tcp-echo")) tcp_echo = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--udp-echo")) udp_echo = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sink")) sink = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dirty-mib")) dirty_mib = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--dirty-rate")) dirty_rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--disk")) disk = argv[i + 1];
        else if (!strcmp(argv[i], "--fill-path")) fill_path = argv[i + 1];
        else if (!strcmp(argv[i], "--disk-fill")) fill = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--status-every")) status_every = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--tx-checksum-offload")) {
            if (strcmp(argv[i + 1], "off") && strcmp(argv[i + 1], "keep")) {
                fprintf(stderr, "rally-lm-agent: --tx-checksum-offload takes off or keep\n");
                return 2;
            }
            checksum_off = !strcmp(argv[i + 1], "off");
        }
        else {
            fprintf(stderr, "rally-lm-agent: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (disk && fill_path) {
        fprintf(stderr, "rally-lm-agent: --fill-path and --disk exclude each other\n");
        return 2;
    }
    status = mmap(NULL, sizeof *status, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    if (status == MAP_FAILED)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);
    if (checksum_off)
        tx_checksum_offload_off();
    if (fill > 0 && (disk || fill_path) && fork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (disk)
            fill_device(disk, fill > 100 ? 100 : fill);
        fill_files(fill_path, fill);
    }
    if (dirty_mib > 0 && dirty_rate > 0 && (dirtier = fork()) == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dirty_memory(dirty_mib, dirty_rate);
    }
    if (status_every > 0 && fork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        report(status_every);
    }
    serve(tcp_echo, udp_echo, sink);
    return 0;
}
