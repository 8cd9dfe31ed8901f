// Heart-beats negotiated at 10000,10000 keep an idle session open: stompjs
// closes a connection that receives nothing for twice the interval, and the
// bridge closes one that sends nothing for twice the interval.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import WebSocket from 'ws';
import { startBridge, collector, within } from './harness.mjs';

Object.assign(globalThis, { WebSocket });

const IDLE_MS = 35000;

let bridge;
before(async () => {
  bridge = await startBridge();
});
after(async () => {
  await bridge?.stop();
});

for (const [name, options] of [
  ['SockJS', () => ({ webSocketFactory: () => new SockJS(`${bridge.httpUrl}/ws`) })],
  ['raw WebSocket', () => ({ brokerURL: `${bridge.wsUrl}/ws-raw` })],
]) {
  test(`idle ${name} session stays open past 30 s`, { timeout: IDLE_MS + 30000 }, async () => {
    const connected = collector(1);
    const received = collector(1);
    const closes = [];
    let connectedFrame;
    const client = new Client({
      ...options(),
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      reconnectDelay: 0,
      onConnect: (frame) => {
        connectedFrame = frame;
        client.watchForReceipt('ready', () => connected.push(true));
        client.subscribe(`/topic/queues/${bridge.queue()}`, (message) => received.push(message), {
          receipt: 'ready',
        });
      },
      onWebSocketClose: (event) => closes.push(event),
    });
    client.activate();
    await within(connected.finished, 10000, 'the subscription');
    assert.equal(connectedFrame.headers['heart-beat'], '10000,10000');

    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    assert.deepEqual(closes, [], 'the connection closed while idle');
    assert.equal(client.connected, true);

    await bridge.publish('iot', { after: 'idle' });
    const [message] = await within(received.finished, 10000, 'a message after the idle period');
    assert.deepEqual(JSON.parse(message.body).payload, { after: 'idle' });
    await client.deactivate();
  });
}
