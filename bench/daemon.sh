# Sourced by the bench scripts. start_daemon BIN CONFIG LOG starts
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
