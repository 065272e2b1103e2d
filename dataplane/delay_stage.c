/* slicebed-delay: the local testbed's delay stage for kernels without sch_netem.
 *
 * Holds the packets of one NFQUEUE and lets each through `delay +- uniform jitter` after it arrived, never before
 * the packet ahead of it (no reordering: TCP suffers from it). Runs on the receiving side, inside the receiving
 * node's namespace, behind an iptables rule such as
 *   iptables -t mangle -A PREROUTING -i tr0 -m mac --mac-source MAC -j NFQUEUE --queue-num 2
 * Only the packets' metadata crosses to userspace (NFQNL_COPY_META), every socket read takes all that is waiting,
 * and one batch verdict (NFQA verdict batch: accept every id up to N) releases all that is due at once. Stops on
 * SIGTERM or SIGINT, releasing what it holds. Built by `make setup` (Makefile; gcc, libnetfilter-queue-dev).
 *
 *   slicebed-delay --queue 2 --delay-ms 5 --jitter-ms 1 [--seed 0]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define HELD_MAX 65536u            /* ring size, a power of two; the kernel queue holds at most HELD_MAX - 1 */
#define IDLE_WAIT_NS 500000000LL   /* wake-up when nothing is held (to notice a signal) */
#define SOCKET_BUFFER (8u << 20)   /* netlink receive buffer: bursts of metadata messages */

struct held {
    int64_t release_ns;
    uint32_t id;
};

struct stage {
    struct nfq_q_handle *queue;
    int64_t delay_ns, jitter_ns, last_release_ns;
    uint64_t rng;
    struct held ring[HELD_MAX];
    uint32_t head, tail;           /* held packets are ring[head..tail), indices taken modulo HELD_MAX */
};

static volatile sig_atomic_t stopping;

static void on_signal(int signum) { (void)signum; stopping = 1; }

static int64_t now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* xorshift64*: a uniform double in [0, 1) from the stage's seeded state. */
static double uniform(struct stage *stage) {
    stage->rng ^= stage->rng >> 12;
    stage->rng ^= stage->rng << 25;
    stage->rng ^= stage->rng >> 27;
    return (double)((stage->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* One packet arrived: note its id and release time (after the delay, never before the packet ahead). */
static int hold(struct nfq_q_handle *queue, struct nfgenmsg *message, struct nfq_data *packet, void *data) {
    (void)queue; (void)message;
    struct stage *stage = data;
    struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(packet);
    if (header == NULL)
        return 0;
    int64_t wait = stage->delay_ns;
    if (stage->jitter_ns > 0)
        wait += (int64_t)((2 * uniform(stage) - 1) * (double)stage->jitter_ns);
    int64_t release = now_ns() + (wait > 0 ? wait : 0);
    if (release < stage->last_release_ns)
        release = stage->last_release_ns;
    stage->last_release_ns = release;
    stage->ring[stage->tail % HELD_MAX] = (struct held){release, ntohl(header->packet_id)};
    stage->tail++;
    return 0;
}

/* Accept every held packet due at `now` (all of them when `now` is INT64_MAX) with one batch verdict. */
static void release_due(struct stage *stage, int64_t now) {
    uint32_t last = stage->head;
    while (last != stage->tail && stage->ring[last % HELD_MAX].release_ns <= now)
        last++;
    if (last == stage->head)
        return;
    nfq_set_verdict_batch(stage->queue, stage->ring[(last - 1) % HELD_MAX].id, NF_ACCEPT);
    stage->head = last;
}

static _Noreturn void usage_error(const char *problem) {
    fprintf(stderr, "slicebed: error: slicebed-delay: %s (usage: slicebed-delay --queue N --delay-ms MS "
                    "[--jitter-ms MS] [--seed N])\n", problem);
    exit(2);
}

static double number(const char *text, const char *option) {
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(value) || value < 0) {
        char problem[160];
        snprintf(problem, sizeof problem, "%s %s: expected a number >= 0", option, text);
        usage_error(problem);
    }
    return value;
}

static _Noreturn void fail(const char *what) {
    fprintf(stderr, "slicebed: error: slicebed-delay: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    static struct stage stage;
    static const struct option options[] = {
        {"queue", required_argument, NULL, 'q'}, {"delay-ms", required_argument, NULL, 'd'},
        {"jitter-ms", required_argument, NULL, 'j'}, {"seed", required_argument, NULL, 's'}, {NULL, 0, NULL, 0}};
    double queue_number = -1, delay_ms = -1, jitter_ms = 0, seed = 0;
    for (int option; (option = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        switch (option) {
        case 'q': queue_number = number(optarg, "--queue"); break;
        case 'd': delay_ms = number(optarg, "--delay-ms"); break;
        case 'j': jitter_ms = number(optarg, "--jitter-ms"); break;
        case 's': seed = number(optarg, "--seed"); break;
        default: usage_error("unknown option");
        }
    }
    if (optind < argc || queue_number < 0 || delay_ms < 0)
        usage_error("--queue and --delay-ms are required, and nothing else");
    if (queue_number > 65535 || queue_number != (uint16_t)queue_number)
        usage_error("--queue must be an integer in [0, 65535]");
    stage.delay_ns = (int64_t)(delay_ms * 1e6);
    stage.jitter_ns = (int64_t)(jitter_ms * 1e6);
    stage.rng = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;

    struct nfq_handle *handle = nfq_open();
    if (handle == NULL)
        fail("cannot open netfilter queue (root, in the node's namespace?)");
    stage.queue = nfq_create_queue(handle, (uint16_t)queue_number, hold, &stage);
    if (stage.queue == NULL)
        fail("cannot bind the queue (another program reads it?)");
    if (nfq_set_mode(stage.queue, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(stage.queue, HELD_MAX - 1) < 0)
        fail("cannot configure the queue");
    nfnl_rcvbufsiz(nfq_nfnlh(handle), SOCKET_BUFFER);
    int descriptor = nfq_fd(handle);

    sigset_t blocked, waiting;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigprocmask(SIG_BLOCK, &blocked, &waiting);   /* delivered only inside ppoll: no lost wake-up */
    sigdelset(&waiting, SIGTERM);                  /* even where the starting process had them blocked */
    sigdelset(&waiting, SIGINT);
    struct sigaction action = {.sa_handler = on_signal};
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    static char buffer[1u << 16];
    while (!stopping) {
        int64_t now = now_ns();
        release_due(&stage, now);
        int64_t wait = stage.head == stage.tail ? IDLE_WAIT_NS : stage.ring[stage.head % HELD_MAX].release_ns - now;
        struct timespec timeout = {wait / 1000000000LL, wait % 1000000000LL};
        struct pollfd readable = {descriptor, POLLIN, 0};
        if (ppoll(&readable, 1, wait > 0 ? &timeout : &(struct timespec){0, 0}, &waiting) <= 0)
            continue;
        for (ssize_t length; (length = recv(descriptor, buffer, sizeof buffer, MSG_DONTWAIT)) >= 0;)
            nfq_handle_packet(handle, buffer, (int)length);
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != EINTR)
            fail("reading the queue");
    }
    release_due(&stage, INT64_MAX);
    nfq_destroy_queue(stage.queue);
    nfq_close(handle);
    return 0;
}
