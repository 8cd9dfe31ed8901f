// The client guide's notification and calendar examples for authenticated
// users, with @stomp/stompjs and @stomp/rx-stomp over SockJS: each user gets
// only their own messages, and an anonymous client gets none.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@stomp/stompjs';
import { RxStomp } from '@stomp/rx-stomp';
import { firstValueFrom, take, toArray, map } from 'rxjs';
import SockJS from 'sockjs-client';
import { startBridge, collector, within, hs256 } from './harness.mjs';

const SECRET = 'interop-secret';
let bridge;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stompbridge-auth-'));
  writeFileSync(join(dir, 'secret'), SECRET);
  bridge = await startBridge({
    queues: [
      { name: 'notifications', routingKey: 'notifications', options: '    handler: notification' },
      {
        name: 'calendar',
        routingKey: 'calendar',
        options: '    handler: notification\n    notification:\n      user_destination: /queue/calendar',
      },
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

/** The guide's stompjs client with a token, subscribed to `destinations`. */
async function guideClient(jwt, destinations, onMessage) {
  const ready = collector(destinations.length);
  const client = new Client({
    webSocketFactory: () => new SockJS(`${bridge.httpUrl}/ws`),
    connectHeaders: jwt ? { Authorization: `Bearer ${jwt}` } : {},
    onConnect: () => {
      for (const destination of destinations) {
        const receipt = `sub-${destination}`;
        client.watchForReceipt(receipt, () => ready.push(destination));
        client.subscribe(destination, (message) => onMessage(destination, message), { receipt });
      }
    },
  });
  client.activate();
  await within(ready.finished, 10000, `subscriptions to ${destinations}`);
  return client;
}

test('notification and calendar examples reach only their user', async () => {
  const got = { alice: [], bob: [] };
  const alice = await guideClient(token('alice'), ['/user/queue/notifications', '/user/queue/calendar'], (d, m) => {
    const body = JSON.parse(m.body);
    got.alice.push([d, body]);
  });
  const bob = await guideClient(token('bob'), ['/user/queue/notifications', '/user/queue/calendar'], (d, m) => {
    got.bob.push([d, JSON.parse(m.body)]);
  });
  let anonymousErrors = 0;
  const anonymous = new Client({
    webSocketFactory: () => new SockJS(`${bridge.httpUrl}/ws`),
    reconnectDelay: 0,
    onConnect: () => anonymous.subscribe('/user/queue/notifications', () => assert.fail('anonymous got a notification')),
    onStompError: (frame) => {
      anonymousErrors += 1;
      assert.equal(frame.headers.message, 'access denied: SUBSCRIBE to /user/queue/notifications');
    },
  });
  anonymous.activate();

  await bridge.publish('notifications', { userId: 'alice', title: 'Inspection due', message: 'Turbine 3' });
  await bridge.publish('calendar', { userId: 'bob', action: 'created', entityType: 'inspection', entityId: 42, timestamp: '2026-02-17T14:30:00' });
  await bridge.publish('notifications', { userIds: ['alice', 'bob'], title: 'All hands', message: 'Meeting' });

  const deadline = Date.now() + 10000;
  while ((got.alice.length < 2 || got.bob.length < 2) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  // Anything misrouted would have arrived by now as well.
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    got.alice.map(([d, b]) => [d, b.title]),
    [['/user/queue/notifications', 'Inspection due'], ['/user/queue/notifications', 'All hands']],
  );
  assert.deepEqual(
    got.bob.map(([d, b]) => [d, b.title ?? b.action]),
    [['/user/queue/calendar', 'created'], ['/user/queue/notifications', 'All hands']],
  );
  assert.equal(anonymousErrors >= 1, true, 'the anonymous SUBSCRIBE was not refused');
  await Promise.all([alice.deactivate(), bob.deactivate(), anonymous.deactivate()]);
});

test('rx-stomp watch() receives user notifications', async () => {
  const rxStomp = new RxStomp();
  rxStomp.configure({
    webSocketFactory: () => new SockJS(`${bridge.httpUrl}/ws`),
    connectHeaders: { Authorization: `Bearer ${token('carol')}` },
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    reconnectDelay: 5000,
  });
  rxStomp.activate();
  const received = firstValueFrom(
    rxStomp.watch('/user/queue/notifications').pipe(
      map((message) => JSON.parse(message.body)),
      take(2),
      toArray(),
    ),
  );
  await firstValueFrom(rxStomp.connected$);
  // watch() subscribes on connect; a receipt-carrying frame confirms the subscription is in place.
  await new Promise((resolve) => {
    rxStomp.watchForReceipt('ping', resolve);
    rxStomp.publish({ destination: '/session/token', body: token('carol'), headers: { receipt: 'ping' } });
  });
  await bridge.publish('notifications', { userId: 'carol', title: 'one' });
  await bridge.publish('notifications', { userId: 'dave', title: 'not for carol' });
  await bridge.publish('notifications', { userId: 'carol', title: 'two' });
  const messages = await within(received, 10000, 'two notifications for carol');
  assert.deepEqual(messages.map((m) => m.title), ['one', 'two']);
  await rxStomp.deactivate();
});
