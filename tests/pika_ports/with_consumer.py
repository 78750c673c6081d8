"""A consumer written with `with` blocks: the connection and the channels
close at the end of their blocks, also after the broker closed a channel.

Usage: with_consumer.py QUEUE MISSING_QUEUE
"""
import sys

import pika

queue, missing_queue = sys.argv[1:3]

with pika.BlockingConnection(pika.ConnectionParameters('localhost')) as connection:
    with connection.channel() as channel:
        channel.queue_declare(queue=queue, auto_delete=True)
        for n in range(3):
            channel.basic_publish(exchange='', routing_key=queue, body=f'message {n}')

        received = 0
        for method, properties, body in channel.consume(queue, inactivity_timeout=1):
            if method is None:
                print(' [.] idle')
                break
            received += 1
            print(f" [x] {method.delivery_tag} {body}")
            channel.basic_ack(method.delivery_tag)
            if received == 3:
                break
        print(f" [c] cancel returned {channel.cancel()}")
        consuming_channel = channel
    print(f" [*] after the block: is_closed={consuming_channel.is_closed}")

    with connection.channel() as channel:
        try:
            channel.queue_declare(queue=missing_queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as err:
            print(f" [!] {type(err).__name__}: {err}")
        failed_channel = channel
    print(f" [*] the broker-closed channel left its block: is_closed={failed_channel.is_closed}")

    try:
        with connection.channel() as channel:
            channel.queue_declare(queue=missing_queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as err:
        print(f" [!] not swallowed: {err.reply_code}")
    print(f" [*] connection still open: {connection.is_open}")

print(f" [*] after the connection block: is_closed={connection.is_closed}")
