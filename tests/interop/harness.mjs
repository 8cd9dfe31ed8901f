// Starts a real stompbridge process for the interop tests, with its own
// exchange and queues on the local RabbitMQ, and publishes to it with amqplib.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes, createHmac } from 'node:crypto';
import { createInterface } from 'node:readline';
import amqp from 'amqplib';

const here = dirname(fileURLToPath(import.meta.url));
const AMQP_URL = process.env.STOMPBRIDGE_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';

function binary() {
  const bin = process.env.STOMPBRIDGE_BIN || join(here, '..', '..', 'target', 'debug', 'stompbridge');
  if (!existsSync(bin)) {
    throw new Error(`stompbridge binary not found at ${bin}: run \`cargo build\` or set STOMPBRIDGE_BIN`);
  }
  return bin;
}

async function connectAmqp() {
  try {
    return await amqp.connect(AMQP_URL);
  } catch (error) {
    throw new Error(
      `RabbitMQ is not reachable at ${AMQP_URL} (${error.message}); start it with \`rabbitmq-server -detached\``,
    );
  }
}

/**
 * Starts stompbridge with one queue per entry of `queues` ({ name, routingKey }
 * suffixes, and `options`: YAML lines for the queue entry, indented by four
 * spaces). `yaml` is appended at the top level of the configuration.
 */
export async function startBridge({ queues = [{ name: 'iot', routingKey: 'iot' }], yaml = '' } = {}) {
  const prefix = `n${randomBytes(4).toString('hex')}`;
  const exchange = `${prefix}.events`;
  const names = queues.map((q) => `${prefix}_${q.name}`);
  const lines = [
    'server:',
    '  listen: 127.0.0.1:0',
    'admin:',
    '  listen: 127.0.0.1:0',
    'rabbitmq:',
    `  url: ${AMQP_URL}`,
    `  exchange: ${exchange}`,
    `  app_exchange: ${prefix}.app`,
    'queues:',
    ...queues.flatMap((q, i) => [
      `  - name: ${names[i]}`,
      `    routing_key: "${q.options?.includes('exchange:') ? q.routingKey : `${prefix}.${q.routingKey}`}"`,
      '    durable: false',
      ...(q.options ? [q.options.replaceAll('PREFIX', prefix)] : []),
    ]),
  ];
  const dir = mkdtempSync(join(tmpdir(), 'stompbridge-interop-'));
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, `${lines.join('\n')}\n${yaml}`);

  const child = spawn(binary(), ['run', '--config', configPath, '--log-format', 'json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  const logs = [];
  child.stderr.on('data', (chunk) => logs.push(chunk.toString()));
  const addresses = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stompbridge did not start:\n${logs.join('')}`)), 15000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`stompbridge exited with ${code}:\n${logs.join('')}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      logs.push(line);
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        return;
      }
      if (event.message === 'stompbridge started') {
        clearTimeout(timer);
        resolve({ public: event.public, admin: event.admin });
      }
    });
  });

  const bridge = new Bridge({ child, prefix, exchange, names, addresses, logs });
  await bridge.waitReady();
  bridge.connection = await connectAmqp();
  bridge.channel = await bridge.connection.createConfirmChannel();
  return bridge;
}

class Bridge {
  constructor({ child, prefix, exchange, names, addresses, logs }) {
    Object.assign(this, { child, prefix, exchange, names, logs });
    this.publicAddr = addresses.public;
    this.adminAddr = addresses.admin;
    this.httpUrl = `http://${addresses.public}`;
    this.wsUrl = `ws://${addresses.public}`;
  }

  queue(suffix = 'iot') {
    return `${this.prefix}_${suffix}`;
  }

  routingKey(suffix = 'iot') {
    return `${this.prefix}.${suffix}`;
  }

  async waitReady() {
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      try {
        const response = await fetch(`http://${this.adminAddr}/readyz`);
        if (response.status === 200) return;
      } catch {
        // Not listening yet.
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `stompbridge did not become ready within 15 s; is RabbitMQ reachable at ${AMQP_URL}?\n${this.logs.join('\n')}`,
    );
  }

  /** Publishes with a publisher confirm. */
  async publish(routingKeySuffix, body) {
    const content = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    this.channel.publish(this.exchange, this.routingKey(routingKeySuffix), content);
    await this.channel.waitForConfirms();
  }

  async metrics() {
    const response = await fetch(`http://${this.adminAddr}/metrics`);
    return response.text();
  }

  /** Stops the process and deletes its queues and exchange. */
  async stop() {
    const exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve([code, signal])));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20000);
    const [code, signal] = await exited.finally(() => clearTimeout(timer));
    for (const name of this.names) {
      await this.channel.deleteQueue(name).catch(() => {});
    }
    await this.channel.deleteExchange(this.exchange).catch(() => {});
    await this.channel.deleteExchange(`${this.prefix}.app`).catch(() => {});
    await this.connection.close().catch(() => {});
    if (signal === 'SIGKILL') {
      throw new Error(`stompbridge did not exit within 20 s of SIGTERM:\n${this.logs.slice(-30).join('\n')}`);
    }
    if (code !== 0) {
      throw new Error(`stompbridge exited with ${code} after SIGTERM:\n${this.logs.slice(-30).join('\n')}`);
    }
  }
}

/** Resolves with the first `count` values pushed to the returned `push`. */
export function collector(count) {
  const values = [];
  let done;
  const finished = new Promise((resolve) => {
    done = resolve;
  });
  return {
    values,
    finished,
    push(value) {
      values.push(value);
      if (values.length === count) done(values);
    },
  };
}

/** Rejects after `ms` with `what` in the message. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Signs `claims` as an HS256 JWT with `secret`. */
export function hs256(claims, secret) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  const signature = createHmac('sha256', secret).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}
