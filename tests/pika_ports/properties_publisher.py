"""A publisher that passes properties positionally, reuses them, passes
None, and publishes mandatory messages with confirms.

Usage: properties_publisher.py QUEUE UNROUTABLE_KEY
"""
import sys

import pika

queue, unroutable_key = sys.argv[1:3]

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()
channel.queue_declare(queue, auto_delete=True)

plain = pika.BasicProperties(content_type='text/plain', delivery_mode=pika.DeliveryMode.Persistent)
channel.basic_publish('', queue, 'one', plain)
channel.basic_publish('', queue, b'two', plain)
channel.basic_publish('', queue, 'three', None)
channel.basic_publish('', queue, 'four', pika.BasicProperties(headers={'n': 4, 'tags': ['a', 'b']},
                                                              priority=5, timestamp=1700000000,
                                                              expiration='60000', message_id='m4',
                                                              type='order.created', app_id='port'))

channel.confirm_delivery()
channel.basic_publish('', queue, 'five', pika.BasicProperties(correlation_id='c5'), mandatory=True)
try:
    channel.basic_publish('', unroutable_key, 'lost', pika.BasicProperties(message_id='lost'), mandatory=True)
except pika.exceptions.UnroutableError as err:
    returned = err.messages[0]
    print(f" [!] {type(err).__name__}: {returned.method.reply_code} {returned.method.reply_text} {returned.body}")

while True:
    method, properties, body = channel.basic_get(queue, True)
    if method is None:
        break
    print(f" [x] {body} {properties}")

channel.queue_delete(queue)
connection.close()
