#!/usr/bin/env python3
"""pika's side of examples/throughput.rs: same workload, same output."""
import os, sys, time
import pika

def cpu():
    t = os.times()
    return t.user + t.system

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
conn = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
ch = conn.channel()
q = ch.queue_declare('', exclusive=True).method.queue
body = b'x' * 64
t0, c0 = time.monotonic(), cpu()
for _ in range(n):
    ch.basic_publish('', q, body)
dt, dc = time.monotonic() - t0, cpu() - c0
print(f"publish: {n} msgs in {dt:.3f} s = {n/dt:.0f} msgs/s, client CPU {dc:.2f} s")
ch.basic_qos(prefetch_count=1000)
state = {'n': 0}
def cb(ch, method, props, body):
    ch.basic_ack(method.delivery_tag)
    state['n'] += 1
    if state['n'] == n:
        ch.stop_consuming()
t0, c0 = time.monotonic(), cpu()
ch.basic_consume(q, cb)
ch.start_consuming()
dt, dc = time.monotonic() - t0, cpu() - c0
print(f"consume+ack: {n} msgs in {dt:.3f} s = {n/dt:.0f} msgs/s, client CPU {dc:.2f} s")
conn.close()
