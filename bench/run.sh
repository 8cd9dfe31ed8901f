#!/usr/bin/env bash
# Reruns the side-by-side table of BENCHMARKS.md: stompbridge and RabbitMQ
# Web-STOMP measured by the same load tool in the same run. Prints one JSON
# line per measurement, tagged with the server and the run number.
#
# Needs: RabbitMQ on 127.0.0.1:5672 (guest/guest) with the Web-STOMP plugin
# on 127.0.0.1:15674 (rabbitmq-plugins enable rabbitmq_web_stomp), started
# with an open-file limit above the largest connection count, the same limit
# in the shell that runs this script, and the release build:
# cargo build --release --examples --bin stompbridge.
#
# Settings (environment):
# - RUNS: runs of the whole table (default 3).
# - SUBSCRIBERS: subscriber counts of the full-speed fan-out (default
#   "1 100 1000"). Empty skips those runs.
# - DELIVERIES: deliveries each full-speed run aims at (default 2000000). A
#   run publishes DELIVERIES / subscribers messages, at most MESSAGES.
# - MESSAGES: the most messages a full-speed run publishes, and the messages
#   of the raw AMQP run (default 100000).
# - IDLE: idle connections (default 10000).
# The latency case is fixed: 1,000 subscribers, 300 messages at 10/s.
#
# The load tool's progress lines go to standard error. A case that fails (a
# server closing connections, say) prints a line with an "error" field and
# the run goes on.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/daemon.sh

runs=${RUNS:-3}
subscribers=${SUBSCRIBERS-"1 100 1000"}
deliveries=${DELIVERIES:-2000000}
max_messages=${MESSAGES:-100000}
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

# The default of 4,096 queued frames closes a session that falls further
# behind. At full speed the load tool, on the same two cores, can fall that
# far behind for a moment, so the benchmark allows more.
write_config "$work/config.yaml" bench bench_fanout bench.fanout "\
  max_sessions: 100000
  outbox_frames: 32768"

start_daemon "$bin" "$work/config.yaml" "$work/daemon.log"
broker=$(pgrep -f beam.smp | head -1)
webstomp=(--url ws://127.0.0.1:15674/ws --destination /topic/bench.fanout --server-pid "$broker")
webstomp_feed=(--exchange amq.topic --routing-key bench.fanout)
bridge_feed=(--exchange bench.events --routing-key bench.fanout)

# The daemon's arguments change when it restarts.
bridge() { echo --url "ws://$public/ws-raw" --destination /topic/queues/bench_fanout --server-pid "$daemon"; }

# measure SERVER RUN TOOL-ARGUMENTS...: runs the tool and prints its JSON
# line, tagged. A failure is reported on that line and does not stop the
# script.
measure() {
  local server=$1 run=$2 out status=0
  shift 2
  out=$("$tool" "$@" 2>"$work/tool.err") || status=$?
  cat "$work/tool.err" >&2
  if [ "$status" -eq 0 ]; then
    echo "$out" | sed "s/^{/{\"server\":\"$server\",\"run\":$run,/"
  else
    local error
    error=$(grep -m1 '^Error' "$work/tool.err" | tr -d '"\\')
    echo "{\"server\":\"$server\",\"run\":$run,\"mode\":\"$1\",\"arguments\":\"${*:2}\",\"error\":\"$error\"}"
  fi
}

for run in $(seq "$runs"); do
  measure amqp "$run" amqp --messages "$max_messages"
  for n in $subscribers; do
    messages=$((deliveries / n))
    [ "$messages" -gt "$max_messages" ] && messages=$max_messages
    # shellcheck disable=SC2046
    measure stompbridge "$run" fanout $(bridge) "${bridge_feed[@]}" --subscribers "$n" --messages "$messages"
    measure web-stomp "$run" fanout "${webstomp[@]}" "${webstomp_feed[@]}" --subscribers "$n" --messages "$messages"
  done
  # Latency: 1,000 subscribers, 10 messages/s, 30 s.
  # shellcheck disable=SC2046
  measure stompbridge "$run" fanout $(bridge) "${bridge_feed[@]}" --subscribers 1000 --messages 300 --rate 10
  measure web-stomp "$run" fanout "${webstomp[@]}" "${webstomp_feed[@]}" --subscribers 1000 --messages 300 --rate 10
  # Memory per connection on a fresh daemon, so the delta is not served from
  # memory that earlier runs freed.
  kill "$daemon"
  wait "$daemon" 2>/dev/null || true
  start_daemon "$bin" "$work/config.yaml" "$work/daemon.log"
  # shellcheck disable=SC2046
  measure stompbridge "$run" idle $(bridge) --connections "$idle"
  measure web-stomp "$run" idle "${webstomp[@]}" --connections "$idle"
done
