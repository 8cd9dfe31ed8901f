// @stomp/stompjs over sockjs-client forced to each transport: an ordered
// stream of 500 messages from RabbitMQ, and a SEND that travels through
// RabbitMQ and back.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import { startBridge, collector, within, hs256 } from './harness.mjs';

const SECRET = 'transports-secret';
const MESSAGES = 500;
let bridge;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stompbridge-transports-'));
  writeFileSync(join(dir, 'secret'), SECRET);
  bridge = await startBridge({
    queues: [
      { name: 'stream', routingKey: 'stream' },
      // Bound to the application exchange: what clients SEND to /app/echo comes back here.
      { name: 'echo', routingKey: 'echo', options: '    exchange: PREFIX.app' },
    ],
    yaml: `auth:\n  jwt:\n    algorithms: [HS256]\n    secret_file: ${join(dir, 'secret')}\n`,
  });
});
after(async () => {
  await bridge?.stop();
});

function token(user) {
  return hs256({ sub: user, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
}

for (const transport of ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource']) {
  test(`stompjs over SockJS ${transport}`, { timeout: 120000 }, async () => {
    const stream = collector(MESSAGES);
    const echoed = collector(1);
    const ready = collector(2);
    let sockjs;
    const client = new Client({
      webSocketFactory: () => {
        sockjs = new SockJS(`${bridge.httpUrl}/ws`, null, { transports: [transport] });
        return sockjs;
      },
      connectHeaders: { Authorization: `Bearer ${token('tester')}` },
      reconnectDelay: 0,
      onConnect: () => {
        for (const [destination, sink, id] of [
          [`/topic/queues/${bridge.queue('stream')}`, stream, 'stream'],
          [`/topic/queues/${bridge.queue('echo')}`, echoed, 'echo'],
        ]) {
          client.watchForReceipt(id, () => ready.push(id));
          client.subscribe(destination, (message) => sink.push(JSON.parse(message.body)), { receipt: id });
        }
      },
      onStompError: (frame) => assert.fail(`STOMP error: ${frame.headers.message}`),
    });
    client.activate();
    await within(ready.finished, 15000, 'the subscriptions');
    assert.equal(sockjs.transport, transport, 'sockjs-client picked another transport');

    for (let seq = 0; seq < MESSAGES; seq++) {
      await bridge.publish('stream', { seq });
    }
    const messages = await within(stream.finished, 60000, `${MESSAGES} messages over ${transport}`);
    assert.deepEqual(
      messages.map((m) => m.payload.seq),
      Array.from({ length: MESSAGES }, (_, i) => i),
    );

    const sent = collector(1);
    client.watchForReceipt('sent', () => sent.push(true));
    client.publish({
      destination: '/app/echo',
      body: JSON.stringify({ via: transport }),
      headers: { receipt: 'sent', 'content-type': 'application/json' },
    });
    await within(sent.finished, 10000, 'the SEND receipt');
    const [echo] = await within(echoed.finished, 10000, 'the SEND back from RabbitMQ');
    assert.deepEqual(echo.payload, { via: transport });
    assert.equal(echo.routingKey, 'echo');
    await client.deactivate();
  });
}
