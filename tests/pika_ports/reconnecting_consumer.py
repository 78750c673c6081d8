"""A consumer that reconnects on connection errors, over a list of hosts
whose first entry is dead. A poison message makes the broker close the
connection (540) the first time it is seen; the consumer reconnects and
finishes. At most three connections.

Usage: reconnecting_consumer.py QUEUE DEAD_PORT
"""
import sys

import pika

queue, dead_port = sys.argv[1], int(sys.argv[2])

parameters = [
    pika.ConnectionParameters('127.0.0.1', dead_port, socket_timeout=2),
    pika.ConnectionParameters('localhost', 5672, connection_attempts=2, retry_delay=1),
]

published = False
for attempt in range(1, 4):
    try:
        connection = pika.BlockingConnection(parameters)
        print(f" [*] attempt {attempt}: connected")
        channel = connection.channel()
        channel.queue_declare(queue=queue)
        channel.basic_qos(prefetch_count=1)
        if not published:
            for body in ('one', 'poison', 'two'):
                channel.basic_publish(exchange='', routing_key=queue, body=body)
            published = True
        for method, properties, body in channel.consume(queue, inactivity_timeout=1):
            if method is None:
                print(' [*] queue drained')
                break
            print(f" [x] {body} redelivered={method.redelivered}")
            if body == b'poison' and not method.redelivered:
                channel.basic_qos(prefetch_size=1)
            channel.basic_ack(method.delivery_tag)
        channel.queue_delete(queue=queue)
        connection.close()
        print(' [*] done')
        break
    except pika.exceptions.AMQPConnectionError as err:
        print(f" [!] {type(err).__name__}: {err}; reconnecting")
        continue
