"""A headers exchange with x-match: all and any.

Usage: headers_exchange.py EXCHANGE QUEUE_ALL QUEUE_ANY
"""
import sys

import pika

exchange, queue_all, queue_any = sys.argv[1:4]

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

channel.exchange_declare(exchange=exchange, exchange_type='headers')
channel.queue_declare(queue=queue_all)
channel.queue_declare(queue=queue_any)
channel.queue_bind(queue=queue_all, exchange=exchange,
                   arguments={'x-match': 'all', 'format': 'pdf', 'type': 'report'})
channel.queue_bind(queue=queue_any, exchange=exchange,
                   arguments={'x-match': 'any', 'format': 'pdf', 'type': 'log'})

messages = [
    ('pdf report', {'format': 'pdf', 'type': 'report'}),
    ('pdf log', {'format': 'pdf', 'type': 'log'}),
    ('zip log', {'format': 'zip', 'type': 'log'}),
    ('zip report', {'format': 'zip', 'type': 'report'}),
    ('no headers', None),
]
for body, headers in messages:
    channel.basic_publish(exchange=exchange, routing_key='', body=body,
                          properties=pika.BasicProperties(headers=headers))
    print(f" [x] Sent {body!r} with {headers}")

for queue, name in ((queue_all, 'all'), (queue_any, 'any')):
    while True:
        method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is None:
            break
        print(f" [{name}] {body} headers={properties.headers} left={method.message_count}")

channel.queue_delete(queue=queue_all)
channel.queue_delete(queue=queue_any)
channel.exchange_delete(exchange=exchange)
connection.close()
