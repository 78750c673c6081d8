"""A basic_get polling loop that prints the frames and properties.

Usage: basic_get_poll.py QUEUE
"""
import sys

import pika

queue = sys.argv[1]

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

print(channel.queue_declare(queue=queue))

channel.basic_publish(exchange='', routing_key=queue, body='first')
channel.basic_publish(exchange='', routing_key=queue, body=b'second\n',
                      properties=pika.BasicProperties(content_type='text/plain',
                                                      delivery_mode=pika.DeliveryMode.Persistent))
channel.basic_publish(exchange='', routing_key=queue, body=b'\x00\xffthird',
                      properties=pika.BasicProperties(headers={'retries': 3, 'source': 'poller'},
                                                      priority=5,
                                                      correlation_id='c-3',
                                                      timestamp=1700000000))

polls = 0
while polls < 10:
    polls += 1
    method_frame, header_frame, body = channel.basic_get(queue)
    if method_frame:
        print(method_frame)
        print(header_frame)
        print(body)
        channel.basic_ack(method_frame.delivery_tag)
    else:
        print('No message returned')
        break

print(channel.queue_delete(queue=queue))
connection.close()
