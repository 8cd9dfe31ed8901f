// The client guide's minimal example, unchanged except for the server address
// and the destination, against a real stompbridge and RabbitMQ.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import WebSocket from 'ws';
import { startBridge, collector, within } from './harness.mjs';

// Node 20 has no global WebSocket; browsers and Node 22 do.
Object.assign(globalThis, { WebSocket });

let bridge;
before(async () => {
  bridge = await startBridge();
});
after(async () => {
  await bridge?.stop();
});

/** Runs the guide's example against `factory` and collects `count` messages. */
async function receiveWithGuideClient(options, destination, count, publish) {
  const received = collector(count);
  const subscribed = collector(1);
  const client = new Client({
    ...options,
    connectHeaders: {
      Authorization: 'Bearer <your-jwt-token>',
    },
    onConnect: () => {
      console.log('Connected');
      client.watchForReceipt('subscribed', () => subscribed.push(true));
      client.subscribe(destination, (message) => {
        received.push(message);
      }, { receipt: 'subscribed' });
    },
  });
  client.activate();
  await within(subscribed.finished, 10000, 'the subscription receipt');
  await publish();
  const messages = await within(received.finished, 10000, `${count} messages on ${destination}`);
  await client.deactivate();
  return messages;
}

const payload = { sensorId: 123, value: 75.5, alertLevel: 'warning' };

function assertEnvelope(body, queue, routingKey) {
  const event = JSON.parse(body);
  assert.deepEqual(Object.keys(event).sort(), ['handlerType', 'payload', 'queueName', 'routingKey', 'timestamp']);
  assert.equal(event.queueName, queue);
  assert.equal(event.handlerType, 'generic');
  assert.equal(event.routingKey, routingKey);
  assert.match(event.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(event.payload, payload);
}

for (const prefix of ['/ws', '/ws/chat']) {
  test(`guide example over SockJS at ${prefix}`, async () => {
    const queue = bridge.queue();
    const [message] = await receiveWithGuideClient(
      { webSocketFactory: () => new SockJS(`${bridge.httpUrl}${prefix}`) },
      `/topic/queues/${queue}`,
      1,
      () => bridge.publish('iot', payload),
    );
    assert.equal(message.headers.destination, `/topic/queues/${queue}`);
    assertEnvelope(message.body, queue, bridge.routingKey());
  });
}

test('guide example over raw WebSocket at /ws-raw', async () => {
  const queue = bridge.queue();
  const [message] = await receiveWithGuideClient(
    { brokerURL: `${bridge.wsUrl}/ws-raw` },
    `/topic/queues/${queue}`,
    1,
    () => bridge.publish('iot', payload),
  );
  assertEnvelope(message.body, queue, bridge.routingKey());
});

test('firehose over SockJS carries queueName and data', async () => {
  const queue = bridge.queue();
  const [message] = await receiveWithGuideClient(
    { webSocketFactory: () => new SockJS(`${bridge.httpUrl}/ws`) },
    '/topic/queues',
    1,
    () => bridge.publish('iot', payload),
  );
  const event = JSON.parse(message.body);
  assert.deepEqual(Object.keys(event), ['queueName', 'data']);
  assert.equal(event.queueName, queue);
  assertEnvelope(JSON.stringify(event.data), queue, bridge.routingKey());
});

test('100 messages arrive in order over SockJS and raw WebSocket', async () => {
  const queue = bridge.queue();
  const options = [
    { webSocketFactory: () => new SockJS(`${bridge.httpUrl}/ws`) },
    { brokerURL: `${bridge.wsUrl}/ws-raw` },
  ];
  for (const option of options) {
    const messages = await receiveWithGuideClient(option, `/topic/queues/${queue}`, 100, async () => {
      for (let seq = 0; seq < 100; seq++) {
        await bridge.publish('iot', { seq });
      }
    });
    assert.deepEqual(
      messages.map((m) => JSON.parse(m.body).payload.seq),
      Array.from({ length: 100 }, (_, i) => i),
    );
  }
});
