// A real browser: headless Chromium opens a page that runs the client guide's
// code with sockjs-client and @stomp/stompjs, once with WebSocket available
// and once with WebSocket removed (forcing an HTTP transport). Both must
// receive the messages published to RabbitMQ. Screenshots go to
// tests/interop/test-output/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, mkdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startBridge } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const output = join(here, 'test-output');

let bridge;
let pages;
let browser;

/** Serves the test page and the two client libraries on 127.0.0.1. */
function pageServer() {
  const files = {
    '/page.html': ['text/html', join(here, 'browser', 'page.html')],
    '/vendor/sockjs.min.js': ['application/javascript', join(here, 'node_modules/sockjs-client/dist/sockjs.min.js')],
    '/vendor/stomp.umd.min.js': ['application/javascript', join(here, 'node_modules/@stomp/stompjs/bundles/stomp.umd.min.js')],
  };
  const server = createServer((request, response) => {
    const file = files[new URL(request.url, 'http://x').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'Content-Type': file[0] }).end(readFileSync(file[1]));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium package (.ci/run does) or set CHROMIUM_PATH`);
  }
  mkdirSync(output, { recursive: true });
  bridge = await startBridge();
  pages = await pageServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  pages?.close();
  await bridge?.stop();
});

for (const [name, noWebSocket] of [['all transports', false], ['WebSocket disabled', true]]) {
  test(`browser receives messages with ${name}`, { timeout: 60000 }, async () => {
    const page = await browser.newPage();
    page.on('console', (message) => console.log(`[page] ${message.text()}`));
    const query = new URLSearchParams({
      server: bridge.httpUrl,
      destination: `/topic/queues/${bridge.queue()}`,
      ...(noWebSocket ? { nows: '1' } : {}),
    });
    await page.goto(`http://127.0.0.1:${pages.address().port}/page.html?${query}`);
    await page.waitForFunction(() => window.subscribed === true, null, { timeout: 20000 });
    const transport = await page.evaluate(() => window.transport);
    if (noWebSocket) {
      assert.notEqual(transport, 'websocket', 'WebSocket was removed, yet sockjs-client used it');
    } else {
      assert.equal(transport, 'websocket');
    }

    for (let n = 0; n < 20; n++) {
      await bridge.publish('iot', { sensorId: 123, value: n });
    }
    await page.waitForFunction(() => window.received.length >= 20, null, { timeout: 20000 });
    const received = await page.evaluate(() => window.received);
    assert.deepEqual(received.map((e) => e.payload.value), Array.from({ length: 20 }, (_, i) => i));
    assert.equal(received[0].queueName, bridge.queue());
    const file = join(output, `browser-${noWebSocket ? 'no-websocket' : 'websocket'}.png`);
    await page.screenshot({ path: file });
    console.log(`transport ${transport}; screenshot ${file}`);
    await page.close();
  });
}
