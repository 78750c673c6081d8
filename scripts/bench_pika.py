#!/usr/bin/env python3
"""pika's side of examples/bench_workloads.rs: the same workloads with
pika's BlockingConnection, the same `RESULT key=value ...` output.

  bench_pika.py publish N        basic_publish without confirms (then one round trip)
  bench_pika.py consume N        prefilled queue, prefetch 1000, basic_ack per message
  bench_pika.py rpc N            tutorial 6 client, N sequential calls (needs an rpc-server)
  bench_pika.py rpc-server SECS  tutorial 6 server on the RPC queue
  bench_pika.py confirm-each N   confirm_delivery + basic_publish (waits for each confirm)
  bench_pika.py confirm-pipelined N W   at most W unconfirmed (SelectConnection, see below)
  bench_pika.py confirm-batch N  publish all N, then wait for their confirms (SelectConnection)
options: --size BYTES (64) --host H (127.0.0.1) --port P (5672)
The RPC queue is $BENCH_RPC_QUEUE, or pikars_bench_rpc.

pika's BlockingConnection has no pipelined confirms (with confirm_delivery,
each basic_publish waits for its ack), so confirm-pipelined and
confirm-batch use pika's asynchronous adapter, SelectConnection, the way
pika's asynchronous publisher example does: publish, and count acks in the
confirm_delivery callback.
"""
import argparse
import glob
import os
import sys
import time
import uuid

import pika

RPC_QUEUE = os.environ.get('BENCH_RPC_QUEUE') or 'pikars_bench_rpc'


def cpu_ns():
    """On-CPU ns (user + system) of every thread of this process, as the Rust side measures it."""
    total = 0
    for path in glob.glob('/proc/self/task/*/schedstat'):
        with open(path) as f:
            total += int(f.read().split()[0])
    return total


class Mark:
    def __init__(self):
        self.t, self.cpu = time.monotonic(), cpu_ns()

    def report(self, workload, n, extra=''):
        wall = time.monotonic() - self.t
        cpu = (cpu_ns() - self.cpu) / 1e9
        print(f'RESULT workload={workload} impl=pika n={n} wall_s={wall:.4f} msgs_per_s={n / wall:.0f} '
              f'cpu_s={cpu:.4f} cpu_us_per_msg={cpu * 1e6 / n:.3f}{extra}', flush=True)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('workload', choices=['publish', 'consume', 'rpc', 'rpc-server', 'confirm-each',
                                        'confirm-pipelined', 'confirm-batch'])
    p.add_argument('n', type=int, nargs='?', default=100_000)
    p.add_argument('window', type=int, nargs='?', default=1000)
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=5672)
    a = p.parse_args()
    if a.workload in ('confirm-pipelined', 'confirm-batch'):
        window = max(1, a.window) if a.workload == 'confirm-pipelined' else None
        return confirm_async(a, window)

    conn = pika.BlockingConnection(pika.ConnectionParameters(a.host, a.port))
    ch = conn.channel()
    body = b'x' * a.size
    n, warmup = a.n, max(1, min(1000, a.n // 10))

    def queue():
        return ch.queue_declare('', exclusive=True).method.queue

    if a.workload == 'publish':
        q = queue()
        for _ in range(warmup):
            ch.basic_publish('', q, body)
        mark = Mark()
        for _ in range(n):
            ch.basic_publish('', q, body)
        ch.queue_declare(q, passive=True)  # one round trip: the broker has read every publish
        mark.report('publish', n)
    elif a.workload == 'consume':
        q = queue()
        for _ in range(n):
            ch.basic_publish('', q, body)
        deadline = time.monotonic() + 60
        while ch.queue_declare(q, passive=True).method.message_count < n:
            if time.monotonic() > deadline:
                sys.exit(f'queue {q} never reached {n} messages')
            time.sleep(0.02)
        ch.basic_qos(prefetch_count=1000)
        state = {'n': 0}

        def on_message(ch, method, properties, body):
            ch.basic_ack(method.delivery_tag)
            state['n'] += 1
            if state['n'] == n:
                ch.stop_consuming()

        mark = Mark()
        ch.basic_consume(q, on_message)
        ch.start_consuming()
        mark.report('consume', state['n'])
    elif a.workload == 'confirm-each':
        q = queue()
        ch.confirm_delivery()
        for _ in range(warmup):
            ch.basic_publish('', q, body)
        mark = Mark()
        for _ in range(n):
            ch.basic_publish('', q, body)
        mark.report('confirm-each', n)
    elif a.workload == 'rpc-server':
        ch.queue_declare(RPC_QUEUE, auto_delete=True)
        ch.basic_qos(prefetch_count=1)

        def on_request(ch, method, props, body):
            response = fib(int(body))
            ch.basic_publish('', props.reply_to, str(response),
                             pika.BasicProperties(correlation_id=props.correlation_id))
            ch.basic_ack(method.delivery_tag)

        ch.basic_consume(RPC_QUEUE, on_request)
        print(f'rpc-server: awaiting requests on {RPC_QUEUE} for {n} s', file=sys.stderr, flush=True)
        deadline = time.monotonic() + n
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.5)
    elif a.workload == 'rpc':
        rpc_client(conn, ch, n)
    conn.close()


def confirm_async(a, window):
    """Pipelined confirms with SelectConnection: at most `window` unconfirmed
    (None: publish all, then wait), a warm-up round first, then the measured one."""
    body = b'x' * a.size
    n, warmup = a.n, max(1, min(1000, a.n // 10))
    settled = bytearray(warmup + n + 2)  # per delivery tag: 1 once acked or nacked
    s = {'published': 0, 'settled': 0, 'contiguous': 0, 'nacked': 0, 'target': 0, 'mark': None,
         'ch': None, 'queue': None, 'error': None}

    def pump():
        limit = s['target'] if window is None else min(s['target'], s['settled'] + window)
        while s['published'] < limit:
            s['ch'].basic_publish('', s['queue'], body)
            s['published'] += 1

    def start(count):
        s['target'] = s['published'] + count
        pump()

    def settle(tag, nack):
        if not settled[tag]:
            settled[tag] = 1
            s['settled'] += 1
            s['nacked'] += nack

    def on_confirm(frame):
        m = frame.method
        nack = isinstance(m, pika.spec.Basic.Nack)
        if m.multiple:
            for tag in range(s['contiguous'] + 1, m.delivery_tag + 1):
                settle(tag, nack)
        else:
            settle(m.delivery_tag, nack)
        while s['contiguous'] < s['published'] and settled[s['contiguous'] + 1]:
            s['contiguous'] += 1
        if s['settled'] < s['target']:
            pump()
        elif s['mark'] is None:  # warm-up done
            s['nacked_before'] = s['nacked']
            s['mark'] = Mark()
            start(n)
        else:
            s['mark'].report(a.workload, n, f' window={window or "none"} failed={s["nacked"] - s["nacked_before"]}')
            s['done'] = True
            conn.close()

    def on_queue(frame):
        s['queue'] = frame.method.queue
        s['ch'].confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: start(warmup))

    def on_channel(ch):
        s['ch'] = ch
        ch.queue_declare('', exclusive=True, callback=on_queue)

    def on_open_error(_conn, err):
        s['error'] = err
        conn.ioloop.stop()

    def on_close(_conn, reason):
        if not s.get('done'):
            s['error'] = reason
        conn.ioloop.stop()

    conn = pika.SelectConnection(pika.ConnectionParameters(a.host, a.port),
                                 on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
                                 on_open_error_callback=on_open_error, on_close_callback=on_close)
    conn.ioloop.start()
    if s['error'] is not None:
        sys.exit(f'{a.workload}: {s["error"]!r}')


def rpc_client(conn, ch, n):
    """Tutorial 6's FibonacciRpcClient, inlined."""
    ch.queue_declare(RPC_QUEUE, passive=True)
    callback_queue = ch.queue_declare('', exclusive=True).method.queue
    state = {'response': None, 'corr_id': None}

    def on_response(ch, method, props, body):
        if state['corr_id'] == props.correlation_id:
            state['response'] = body

    ch.basic_consume(callback_queue, on_response, auto_ack=True)

    def call(x):
        state['response'] = None
        state['corr_id'] = str(uuid.uuid4())
        ch.basic_publish('', RPC_QUEUE, str(x),
                         pika.BasicProperties(reply_to=callback_queue, correlation_id=state['corr_id']))
        while state['response'] is None:
            conn.process_data_events(time_limit=None)
        return int(state['response'])

    for _ in range(max(1, min(200, n // 10))):
        call(10)
    latencies = []
    mark = Mark()
    for _ in range(n):
        t = time.perf_counter()
        assert call(10) == 55
        latencies.append((time.perf_counter() - t) * 1e6)
    latencies.sort()

    def pct(p):
        return latencies[round((len(latencies) - 1) * p)]

    mark.report('rpc', n, f' p50_us={pct(0.5):.1f} p99_us={pct(0.99):.1f}')


if __name__ == '__main__':
    main()
