#!/usr/bin/env bash
# Runs the load tool once in a small configuration against a local
# stompbridge: a check that the tool and the fan-out path work, not a
# measurement. Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) and the debug
# build (`cargo build --examples`).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh

bin=target/debug/stompbridge
tool=target/debug/examples/loadtest
work=$(mktemp -d)
prefix="smoke$$"
cleanup() {
  kill "${daemon:-}" 2>/dev/null || true
  rabbitmqctl -q delete_queue "${prefix}_fanout" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Shared exchange names, because rabbitmqctl cannot delete exchanges and each
# run would leave its own behind. Queue and routing key stay per run.
write_config "$work/config.yaml" smoke "${prefix}_fanout" "$prefix.fanout"

start_daemon "$bin" "$work/config.yaml" "$work/daemon.log"

target=(--url "ws://$public/ws-raw" --destination "/topic/queues/${prefix}_fanout" --server-pid "$daemon")
fanout=$("$tool" fanout "${target[@]}" --exchange smoke.events --routing-key "$prefix.fanout" \
  --subscribers 20 --messages 2000 --drain-secs 20)
echo "$fanout"
idle=$("$tool" idle "${target[@]}" --connections 200 --hold-secs 1)
echo "$idle"
amqp=$("$tool" amqp --messages 2000)
echo "$amqp"

for expected in '"delivered":40000' '"missing":0' '"duplicates":0' '"out_of_order":0'; do
  if [[ "$fanout" != *"$expected"* ]]; then
    echo "load tool smoke run: expected $expected in the fan-out result" >&2
    exit 1
  fi
done
[[ "$idle" == *'"connections":200'* ]] || { echo "load tool smoke run: idle run did not hold 200 connections" >&2; exit 1; }
[[ "$amqp" == *'"messages":2000'* ]] || { echo "load tool smoke run: AMQP run did not consume 2000 messages" >&2; exit 1; }
echo "load tool smoke run passed"
