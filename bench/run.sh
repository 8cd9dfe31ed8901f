#!/usr/bin/env bash
# Reruns the side-by-side table of BENCHMARKS.md: stompbridge and RabbitMQ
# Web-STOMP measured by the same load tool in the same run. Prints one JSON
# line per measurement, tagged with the server and the run number.
#
# Needs: RabbitMQ on 127.0.0.1:5672 (guest/guest) with the Web-STOMP plugin
# on 127.0.0.1:15674 (rabbitmq-plugins enable rabbitmq_web_stomp), started
# with an open-file limit above the largest connection count, and the release
# build: cargo build --release --examples --bin stompbridge.
#
# Settings (environment): RUNS (default 3), SUBSCRIBERS (default "1 100
# 1000"; empty skips the full-speed fan-out runs), MESSAGES (default 20000),
# IDLE (default 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh

runs=${RUNS:-3}
subscribers=${SUBSCRIBERS-"1 100 1000"}
messages=${MESSAGES:-20000}
idle=${IDLE:-10000}
bin=target/release/stompbridge
tool=target/release/examples/loadtest
work=$(mktemp -d)
cleanup() {
  kill "${daemon:-}" 2>/dev/null || true
  rabbitmqctl -q delete_queue bench_fanout >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/config.yaml" <<YAML
server:
  listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
rabbitmq:
  url: amqp://guest:guest@127.0.0.1:5672/%2f
  exchange: bench.events
  app_exchange: bench.app
limits:
  max_sessions: 100000
log:
  # Quiet, but for the startup line that names the listening addresses.
  level: warn,stompbridge::server=info
queues:
  - name: bench_fanout
    routing_key: bench.fanout
    durable: false
    handler: generic
YAML

start_daemon "$bin" "$work/config.yaml" "$work/daemon.log"
broker=$(pgrep -f beam.smp | head -1)

bridge=(--url "ws://$public/ws-raw" --destination /topic/queues/bench_fanout --server-pid "$daemon")
bridge_feed=(--exchange bench.events --routing-key bench.fanout)
webstomp=(--url ws://127.0.0.1:15674/ws --destination /topic/bench.fanout --server-pid "$broker")
webstomp_feed=(--exchange amq.topic --routing-key bench.fanout)

tag() { sed "s/^{/{\"server\":\"$1\",\"run\":$2,/"; }

for run in $(seq "$runs"); do
  "$tool" amqp --messages "$messages" | tag amqp "$run"
  for n in $subscribers; do
    "$tool" fanout "${bridge[@]}" "${bridge_feed[@]}" --subscribers "$n" --messages "$messages" | tag stompbridge "$run"
    "$tool" fanout "${webstomp[@]}" "${webstomp_feed[@]}" --subscribers "$n" --messages "$messages" | tag web-stomp "$run"
  done
  # Latency: 1,000 subscribers, 10 messages/s, 30 s.
  "$tool" fanout "${bridge[@]}" "${bridge_feed[@]}" --subscribers 1000 --messages 300 --rate 10 | tag stompbridge "$run"
  "$tool" fanout "${webstomp[@]}" "${webstomp_feed[@]}" --subscribers 1000 --messages 300 --rate 10 | tag web-stomp "$run"
  "$tool" idle "${bridge[@]}" --connections "$idle" | tag stompbridge "$run"
  "$tool" idle "${webstomp[@]}" --connections "$idle" | tag web-stomp "$run"
done
