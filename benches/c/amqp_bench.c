/*
 * The C client's side of examples/bench_workloads.rs (pikars) and
 * scripts/bench_pika.py (pika): the same workloads with rabbitmq-c
 * (librabbitmq), written the way that library's documentation and examples
 * use it, printing the same `RESULT key=value ...` line.
 *
 *   cc -O2 -o amqp_bench benches/c/amqp_bench.c -lrabbitmq
 *
 *   amqp_bench publish N              amqp_basic_publish without confirms (then one round trip)
 *   amqp_bench consume N              prefilled queue, prefetch 1000, amqp_consume_message +
 *                                     amqp_basic_ack per message
 *   amqp_bench rpc N                  tutorial 6 client, N sequential calls (needs an rpc-server)
 *   amqp_bench rpc-server SECONDS     tutorial 6 server, exits after SECONDS
 *   amqp_bench confirm-each N         confirm.select, then each amqp_basic_publish waits for its
 *                                     basic.ack (amqp_simple_wait_frame)
 *   amqp_bench confirm-pipelined N W  at most W unconfirmed; reads acks only when W are out
 *   amqp_bench confirm-batch N        publish all N, then wait for all their acks
 *   options: --size BYTES (64) --host H (127.0.0.1) --port P (5672)
 *   The RPC queue is $BENCH_RPC_QUEUE, or pikars_bench_rpc.
 *
 * Like the other two, it measures the process's on-CPU time (user + system,
 * from /proc/self/task/ * /schedstat) and wall time of the measured part
 * only; connection setup, queue declaration and warm-up are left out.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#if defined(__has_include) && __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

#define CHANNEL 1
#define FRAME_MAX 131072 /* pika's and pikars's default */
#define PREFETCH 1000

static const char *workload = "?";

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "amqp_bench %s: ", workload);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void check_reply(amqp_rpc_reply_t r, const char *what) {
  switch (r.reply_type) {
  case AMQP_RESPONSE_NORMAL:
    return;
  case AMQP_RESPONSE_NONE:
    die("%s: missing RPC reply", what);
  case AMQP_RESPONSE_LIBRARY_EXCEPTION:
    die("%s: %s", what, amqp_error_string2(r.library_error));
  case AMQP_RESPONSE_SERVER_EXCEPTION:
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_t *m = r.reply.decoded;
      die("%s: connection closed by the broker: %u %.*s", what, m->reply_code,
          (int)m->reply_text.len, (char *)m->reply_text.bytes);
    }
    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_t *m = r.reply.decoded;
      die("%s: channel closed by the broker: %u %.*s", what, m->reply_code,
          (int)m->reply_text.len, (char *)m->reply_text.bytes);
    }
    die("%s: unexpected server method 0x%08x", what, r.reply.id);
  }
  die("%s: unknown reply type", what);
}

static void check_status(int status, const char *what) {
  if (status < 0) die("%s: %s", what, amqp_error_string2(status));
}

/* On-CPU nanoseconds (user + system) of every thread of this process. */
static uint64_t cpu_ns(void) {
  uint64_t total = 0;
  DIR *d = opendir("/proc/self/task");
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[300];
    snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    unsigned long long ns;
    if (fscanf(f, "%llu", &ns) == 1) total += ns;
    fclose(f);
  }
  closedir(d);
  return total;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

struct mark {
  double wall;
  uint64_t cpu;
};

/* A getpid system call at the start and at the end of the measured part:
   scripts/cpu-split finds the part in a profile by these two. */
static void phase_marker(void) { (void)syscall(SYS_getpid); }

static struct mark mark_now(void) {
  phase_marker();
  return (struct mark){now_s(), cpu_ns()};
}

/* A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: the peak), 0 if none. */
static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = 0;
  size_t len = strlen(field);
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, field, len)) {
      kib = strtol(line + len, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kib;
}

/* Resident memory once connected, before the workload's first buffer. */
static long base_rss_kib;

static void report(struct mark m, const char *name, size_t n, const char *extra) {
  phase_marker();
  double wall = now_s() - m.wall;
  double cpu = (cpu_ns() - m.cpu) / 1e9;
  printf("RESULT workload=%s impl=rabbitmq-c n=%zu wall_s=%.4f msgs_per_s=%.0f cpu_s=%.4f "
         "cpu_us_per_msg=%.3f rss_base_kib=%ld rss_peak_kib=%ld%s\n",
         name, n, wall, n / wall, cpu, cpu * 1e6 / n, base_rss_kib, status_kib("VmHWM:"), extra);
  fflush(stdout);
}

static amqp_connection_state_t connect_to(const char *host, int port) {
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *socket = amqp_tcp_socket_new(conn);
  if (!socket) die("creating the TCP socket");
  check_status(amqp_socket_open(socket, host, port), "opening the TCP socket");
  check_reply(amqp_login(conn, "/", 0, FRAME_MAX, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
              "logging in");
  amqp_channel_open(conn, CHANNEL);
  check_reply(amqp_get_rpc_reply(conn), "opening the channel");
  return conn;
}

static void close_connection(amqp_connection_state_t conn) {
  check_reply(amqp_channel_close(conn, CHANNEL, AMQP_REPLY_SUCCESS), "closing the channel");
  check_reply(amqp_connection_close(conn, AMQP_REPLY_SUCCESS), "closing the connection");
  check_status(amqp_destroy_connection(conn), "ending the connection");
}

/* A server-named exclusive queue (deleted by the broker when we disconnect). */
static amqp_bytes_t declare_exclusive(amqp_connection_state_t conn) {
  amqp_queue_declare_ok_t *ok =
      amqp_queue_declare(conn, CHANNEL, amqp_empty_bytes, 0, 0, 1, 0, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(conn), "declaring a queue");
  amqp_bytes_t q = amqp_bytes_malloc_dup(ok->queue);
  if (!q.bytes) die("out of memory");
  return q;
}

/* queue_declare(passive): one round trip; returns the queue's depth. */
static uint32_t passive_declare(amqp_connection_state_t conn, amqp_bytes_t q) {
  amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, CHANNEL, q, 1, 0, 0, 0, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(conn), "queue_declare(passive)");
  return ok->message_count;
}

static void publish(amqp_connection_state_t conn, amqp_bytes_t q, amqp_bytes_t body) {
  check_status(amqp_basic_publish(conn, CHANNEL, amqp_empty_bytes, q, 0, 0, NULL, body),
               "basic_publish");
}

/* Publisher confirms: which delivery tags (1-based) the broker confirmed. */
struct confirms {
  unsigned char *acked; /* per tag: 0 open, 1 acked, 2 nacked */
  uint64_t cap, published, contiguous, settled, nacked;
};

static void settle(struct confirms *c, uint64_t tag, int nack) {
  if (tag == 0 || tag > c->published) die("confirm for unknown delivery tag %" PRIu64, tag);
  if (!c->acked[tag]) {
    c->acked[tag] = nack ? 2 : 1;
    c->settled++;
    c->nacked += nack;
  }
}

/* Reads one frame (amqp_simple_wait_frame) and applies it if it is a basic.ack or basic.nack. */
static void wait_confirm_frame(amqp_connection_state_t conn, struct confirms *c) {
  amqp_frame_t frame;
  check_status(amqp_simple_wait_frame(conn, &frame), "waiting for a confirm");
  if (frame.frame_type != AMQP_FRAME_METHOD) return;
  uint64_t tag;
  amqp_boolean_t multiple;
  int nack = 0;
  switch (frame.payload.method.id) {
  case AMQP_BASIC_ACK_METHOD: {
    amqp_basic_ack_t *ack = frame.payload.method.decoded;
    tag = ack->delivery_tag, multiple = ack->multiple;
    break;
  }
  case AMQP_BASIC_NACK_METHOD: {
    amqp_basic_nack_t *n = frame.payload.method.decoded;
    tag = n->delivery_tag, multiple = n->multiple, nack = 1;
    break;
  }
  case AMQP_CHANNEL_CLOSE_METHOD:
  case AMQP_CONNECTION_CLOSE_METHOD:
    die("the broker closed the channel or connection while we waited for confirms");
  default:
    return;
  }
  if (multiple) {
    for (uint64_t t = c->contiguous + 1; t <= tag; t++) settle(c, t, nack);
  } else {
    settle(c, tag, nack);
  }
  while (c->contiguous < c->published && c->acked[c->contiguous + 1]) c->contiguous++;
  amqp_maybe_release_buffers(conn);
}

static void confirmed_publish(amqp_connection_state_t conn, struct confirms *c, amqp_bytes_t q,
                              amqp_bytes_t body) {
  if (c->published + 1 >= c->cap) die("more publishes than planned");
  publish(conn, q, body);
  c->published++;
}

/* count publishes with at most `window` unconfirmed, then waits for all of them. */
static void pipelined(amqp_connection_state_t conn, struct confirms *c, amqp_bytes_t q,
                      amqp_bytes_t body, size_t count, uint64_t window) {
  for (size_t i = 0; i < count; i++) {
    while (c->published - c->settled >= window) wait_confirm_frame(conn, c);
    confirmed_publish(conn, c, q, body);
  }
  while (c->settled < c->published) wait_confirm_frame(conn, c);
}

static uint64_t fib(uint64_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

/* A random (version 4) UUID as text, like uuid.uuid4() and uuid::Uuid::new_v4(). */
static void uuid4(char out[37]) {
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != sizeof b) die("getrandom: %s", strerror(errno));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Tutorial 6's client: n sequential call(10)s after a warm-up. */
static void rpc_client(amqp_connection_state_t conn, amqp_bytes_t rpc_queue, size_t n) {
  passive_declare(conn, rpc_queue);
  amqp_bytes_t callback_queue = declare_exclusive(conn);
  amqp_basic_consume(conn, CHANNEL, callback_queue, amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(conn), "basic_consume");

  size_t warmup = n / 10 < 1 ? 1 : n / 10 > 200 ? 200 : n / 10;
  double *latencies = malloc(n * sizeof *latencies);
  if (!latencies) die("out of memory");
  struct mark m = {0};
  for (size_t i = 0; i < warmup + n; i++) {
    if (i == warmup) m = mark_now();
    double t = now_s();
    char corr_id[37];
    uuid4(corr_id);
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
    props.reply_to = callback_queue;
    props.correlation_id = amqp_cstring_bytes(corr_id);
    check_status(amqp_basic_publish(conn, CHANNEL, amqp_empty_bytes, rpc_queue, 0, 0, &props,
                                    amqp_cstring_bytes("10")),
                 "basic_publish");
    long response = -1;
    while (response < 0) {
      amqp_envelope_t envelope;
      amqp_maybe_release_buffers(conn);
      check_reply(amqp_consume_message(conn, &envelope, NULL, 0), "consume_message");
      amqp_basic_properties_t *p = &envelope.message.properties;
      if ((p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) && p->correlation_id.len == 36 &&
          memcmp(p->correlation_id.bytes, corr_id, 36) == 0) {
        char text[32] = {0};
        size_t len = envelope.message.body.len < 31 ? envelope.message.body.len : 31;
        memcpy(text, envelope.message.body.bytes, len);
        response = strtol(text, NULL, 10);
      }
      amqp_destroy_envelope(&envelope);
    }
    if (response != 55) die("call(10) returned %ld", response);
    if (i >= warmup) latencies[i - warmup] = (now_s() - t) * 1e6;
  }
  qsort(latencies, n, sizeof *latencies, cmp_double);
  char extra[64];
  snprintf(extra, sizeof extra, " p50_us=%.1f p99_us=%.1f", latencies[(size_t)((n - 1) * 0.5 + 0.5)],
           latencies[(size_t)((n - 1) * 0.99 + 0.5)]);
  report(m, "rpc", n, extra);
  free(latencies);
  amqp_bytes_free(callback_queue);
}

/* Tutorial 6's server on rpc_queue: answers fib(body) to reply_to, acks each request. */
static void rpc_server(amqp_connection_state_t conn, amqp_bytes_t rpc_queue, size_t seconds) {
  amqp_queue_declare(conn, CHANNEL, rpc_queue, 0, 0, 0, 1, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(conn), "declaring the RPC queue");
  amqp_basic_qos(conn, CHANNEL, 0, 1, 0);
  check_reply(amqp_get_rpc_reply(conn), "basic_qos");
  amqp_basic_consume(conn, CHANNEL, rpc_queue, amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(conn), "basic_consume");
  fprintf(stderr, "rpc-server: awaiting requests on %.*s for %zu s\n", (int)rpc_queue.len,
          (char *)rpc_queue.bytes, seconds);
  double deadline = now_s() + seconds;
  while (now_s() < deadline) {
    amqp_envelope_t envelope;
    struct timeval timeout = {0, 500000};
    amqp_maybe_release_buffers(conn);
    amqp_rpc_reply_t r = amqp_consume_message(conn, &envelope, &timeout, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
      continue;
    check_reply(r, "consume_message");
    char text[32] = {0};
    size_t len = envelope.message.body.len < 31 ? envelope.message.body.len : 31;
    memcpy(text, envelope.message.body.bytes, len);
    char answer[32];
    snprintf(answer, sizeof answer, "%" PRIu64, fib(strtoull(text, NULL, 10)));
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = envelope.message.properties.correlation_id;
    check_status(amqp_basic_publish(conn, CHANNEL, amqp_empty_bytes,
                                    envelope.message.properties.reply_to, 0, 0, &props,
                                    amqp_cstring_bytes(answer)),
                 "basic_publish");
    check_status(amqp_basic_ack(conn, CHANNEL, envelope.delivery_tag, 0), "basic_ack");
    amqp_destroy_envelope(&envelope);
  }
}

static size_t number(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || end == s) die("%s: not a number: %s", what, s);
  return v;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *positional[3] = {0};
  int port = 5672, npos = 0;
  size_t size = 64;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      size = number(argv[++i], "--size");
    } else if (!strcmp(argv[i], "--host") && i + 1 < argc) {
      host = argv[++i];
    } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      port = number(argv[++i], "--port");
    } else if (argv[i][0] != '-' && npos < 3) {
      positional[npos++] = argv[i];
    } else {
      fprintf(stderr, "usage: amqp_bench WORKLOAD [N] [WINDOW] [--size BYTES] [--host H] "
                      "[--port P] (see the head of benches/c/amqp_bench.c)\n");
      return 2;
    }
  }
  if (!positional[0]) die("no workload given");
  workload = positional[0];
  size_t n = positional[1] ? number(positional[1], "N") : 100000;
  size_t window = positional[2] ? number(positional[2], "WINDOW") : 1000;
  if (n == 0) die("N must be positive");
  if (window == 0) window = 1;
  const char *rpc_name = getenv("BENCH_RPC_QUEUE");
  amqp_bytes_t rpc_queue = amqp_cstring_bytes(rpc_name && *rpc_name ? rpc_name : "pikars_bench_rpc");

  amqp_connection_state_t conn = connect_to(host, port);
  base_rss_kib = status_kib("VmRSS:");
  char *payload = malloc(size ? size : 1);
  if (!payload) die("out of memory");
  memset(payload, 'x', size);
  amqp_bytes_t body = {size, payload};
  size_t warmup = n / 10 < 1 ? 1 : n / 10 > 1000 ? 1000 : n / 10;

  if (!strcmp(workload, "publish")) {
    amqp_bytes_t q = declare_exclusive(conn);
    for (size_t i = 0; i < warmup; i++) publish(conn, q, body);
    struct mark m = mark_now();
    for (size_t i = 0; i < n; i++) publish(conn, q, body);
    passive_declare(conn, q); /* one round trip: the broker has read every publish */
    report(m, "publish", n, "");
  } else if (!strcmp(workload, "consume")) {
    amqp_bytes_t q = declare_exclusive(conn);
    for (size_t i = 0; i < n; i++) publish(conn, q, body);
    double deadline = now_s() + 60;
    while (passive_declare(conn, q) < n) {
      if (now_s() > deadline) die("the queue never reached %zu messages", n);
      nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    amqp_basic_qos(conn, CHANNEL, 0, PREFETCH, 0);
    check_reply(amqp_get_rpc_reply(conn), "basic_qos");
    struct mark m = mark_now();
    amqp_basic_consume(conn, CHANNEL, q, amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "basic_consume");
    size_t received = 0;
    while (received < n) {
      amqp_envelope_t envelope;
      amqp_maybe_release_buffers(conn);
      check_reply(amqp_consume_message(conn, &envelope, NULL, 0), "consume_message");
      check_status(amqp_basic_ack(conn, CHANNEL, envelope.delivery_tag, 0), "basic_ack");
      amqp_destroy_envelope(&envelope);
      received++;
    }
    report(m, "consume", received, "");
  } else if (!strcmp(workload, "confirm-each") || !strcmp(workload, "confirm-pipelined") ||
             !strcmp(workload, "confirm-batch")) {
    amqp_bytes_t q = declare_exclusive(conn);
    amqp_confirm_select(conn, CHANNEL);
    check_reply(amqp_get_rpc_reply(conn), "confirm_select");
    struct confirms c = {.cap = warmup + n + 2};
    c.acked = calloc(c.cap, 1);
    if (!c.acked) die("out of memory");
    uint64_t w = !strcmp(workload, "confirm-each")        ? 1
                 : !strcmp(workload, "confirm-pipelined") ? window
                                                          : UINT64_MAX;
    pipelined(conn, &c, q, body, warmup, w);
    uint64_t nacked_before = c.nacked;
    struct mark m = mark_now();
    pipelined(conn, &c, q, body, n, w);
    char extra[64] = "";
    if (w > 1) {
      snprintf(extra, sizeof extra, " window=%s failed=%" PRIu64,
               w == UINT64_MAX ? "none" : positional[2] ? positional[2] : "1000",
               c.nacked - nacked_before);
    }
    report(m, workload, n, extra);
    free(c.acked);
  } else if (!strcmp(workload, "rpc")) {
    rpc_client(conn, rpc_queue, n);
  } else if (!strcmp(workload, "rpc-server")) {
    rpc_server(conn, rpc_queue, n);
  } else {
    die("unknown workload (see the head of benches/c/amqp_bench.c)");
  }
  close_connection(conn);
  free(payload);
  return 0;
}
