"""Dead-lettering: a rejected message goes to the dead-letter exchange;
the consumer of the dead-letter queue reads the x-death header.

Usage: dead_letter.py WORK_QUEUE DLX DEAD_QUEUE
"""
import sys

import pika

work_queue, dlx, dead_queue = sys.argv[1:4]

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

channel.exchange_declare(exchange=dlx, exchange_type='fanout')
channel.queue_declare(queue=dead_queue)
channel.queue_bind(queue=dead_queue, exchange=dlx)
channel.queue_declare(queue=work_queue, arguments={'x-dead-letter-exchange': dlx})

channel.basic_publish(exchange='', routing_key=work_queue, body='bad order',
                      properties=pika.BasicProperties(message_id='order-1', headers={'attempt': 1}))

method, properties, body = channel.basic_get(queue=work_queue)
print(f" [x] Rejecting {body} ({properties.message_id})")
channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)

for method, properties, body in channel.consume(dead_queue, inactivity_timeout=5):
    if method is None:
        print(' [!] nothing was dead-lettered')
        break
    death = properties.headers['x-death'][0]
    print(f" [d] {body} from {method.exchange!r}")
    print(f"     reason={death['reason']} queue={death['queue'] == work_queue} count={death['count']}")
    print(f"     routing-keys={death['routing-keys'] == [work_queue]} exchange={death['exchange']!r}")
    print(f"     first death reason={properties.headers['x-first-death-reason']}")
    print(f"     attempt={properties.headers['attempt']} message_id={properties.message_id}")
    channel.basic_ack(method.delivery_tag)
    break
channel.cancel()

channel.queue_delete(queue=work_queue)
channel.queue_delete(queue=dead_queue)
channel.exchange_delete(exchange=dlx)
connection.close()
