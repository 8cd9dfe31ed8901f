# Sourced by the bench scripts.

# write_config FILE NAME QUEUE ROUTING_KEY [LIMITS] writes a daemon
# configuration with listeners on free ports and exchanges NAME.events and
# NAME.app. It consumes one generic queue QUEUE bound with ROUTING_KEY, and
# LIMITS (YAML lines indented by two spaces) go under `limits:`.
write_config() {
  local file=$1 name=$2 queue=$3 key=$4 limits=""
  # An empty `limits:` would be null, which the configuration rejects.
  if [ -n "${5:-}" ]; then
    limits=$'limits:\n'"$5"
  fi
  cat >"$file" <<YAML
server:
  listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
rabbitmq:
  url: amqp://guest:guest@127.0.0.1:5672/%2f
  exchange: $name.events
  app_exchange: $name.app
$limits
log:
  # Quiet, but for the startup line that names the listening addresses.
  level: warn,stompbridge::server=info
queues:
  - name: $queue
    routing_key: $key
    durable: false
    handler: generic
YAML
}

# start_daemon BIN CONFIG LOG starts
# stompbridge in the background and waits until it is ready. It sets
# `daemon` (the PID), `public` and `admin` (the listening addresses), and
# exits the script if the daemon does not start.
start_daemon() {
  local bin=$1 config=$2 log=$3
  "$bin" run --config "$config" --log-format json >"$log" 2>&1 &
  daemon=$!
  for _ in $(seq 100); do
    grep -q '"stompbridge started"' "$log" && break
    sleep 0.1
  done
  public=$(grep -o '"public":"[^"]*"' "$log" | head -1 | cut -d'"' -f4)
  admin=$(grep -o '"admin":"[^"]*"' "$log" | head -1 | cut -d'"' -f4)
  if [ -z "$public" ]; then
    echo "stompbridge did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  for _ in $(seq 100); do
    "$bin" probe "http://$admin/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "$bin" probe "http://$admin/readyz"
}
