#!/usr/bin/env python3
"""Turns the JSON lines of bench/run.sh into the tables of BENCHMARKS.md:
the median of every figure over the runs, with the range beside it, and the
ratio of the stompbridge median to the Web-STOMP median.

Usage: python3 bench/summarize.py results.jsonl
"""

import json
import statistics
import sys
from collections import defaultdict


def case(line):
    """Returns the case a result line measures, without the server and run."""
    if line["mode"] == "fanout":
        kind = "latency" if line.get("rate") else "throughput"
        return (kind, line["subscribers"])
    if line["mode"] == "idle":
        return ("idle", line["connections"])
    return ("amqp", line["messages"])


def spread(values, digits=0):
    """Formats the median and range of `values`."""
    if not values:
        return "n/a"
    fmt = f"{{:,.{digits}f}}"
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def ratio(ours, theirs, higher_is_better=True):
    if not ours or not theirs:
        return "n/a"
    a, b = statistics.median(ours), statistics.median(theirs)
    if not b or not a:
        return "n/a"
    return f"{a / b:.1f}×" if higher_is_better else f"{b / a:.1f}×"


def read(path):
    """Returns the result lines of `path`, parsed."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(text) for text in lines if text.strip().startswith("{")]


def main(path):
    lines = read(path)
    results = defaultdict(lambda: defaultdict(list))
    errors = []
    for line in lines:
        if "error" in line:
            errors.append(line)
        else:
            results[case(line)][line["server"]].append(line)

    def values(key, server, field, sub=None):
        found = []
        for line in results[key][server]:
            value = line[field][sub] if sub else line[field]
            if isinstance(value, (int, float)):
                found.append(value)
        return found

    runs = max((len(v) for c in results.values() for v in c.values()), default=0)
    print(f"Medians over {runs} run{'s' if runs != 1 else ''}, (min–max) beside them.\n")

    amqp = [k for k in results if k[0] == "amqp"]
    for key in amqp:
        rate = values(key, "amqp", "messages_per_second")
        print(f"Raw AMQP publish and consume, {key[1]:,} messages: {spread(rate)} messages/s\n")

    print("| subscribers | stompbridge delivered/s | Web-STOMP delivered/s | ratio | stompbridge loss, dup, reorder |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for key in sorted(k for k in results if k[0] == "throughput"):
        ours = values(key, "stompbridge", "delivered_per_second")
        theirs = values(key, "web-stomp", "delivered_per_second")
        faults = sum(
            line[f]
            for line in results[key]["stompbridge"]
            for f in ("missing", "duplicates", "out_of_order")
        )
        print(f"| {key[1]:,} | {spread(ours)} | {spread(theirs)} | {ratio(ours, theirs)} | {faults} |")
    print()

    for key in sorted(k for k in results if k[0] == "latency"):
        sample = results[key]["stompbridge"] or results[key]["web-stomp"]
        rate = sample[0]["rate"] if sample else "?"
        print(f"Latency, {key[1]:,} subscribers, {rate} messages/s:\n")
        print("| | stompbridge | Web-STOMP |")
        print("| --- | ---: | ---: |")
        for p in ("p50", "p90", "p99", "max"):
            ours = values(key, "stompbridge", "latency_ms", p)
            theirs = values(key, "web-stomp", "latency_ms", p)
            print(f"| {p} (ms) | {spread(ours, 2)} | {spread(theirs, 2)} |")
        ours = values(key, "stompbridge", "server_cpu_seconds")
        theirs = values(key, "web-stomp", "server_cpu_seconds")
        print(f"| server CPU (s) | {spread(ours, 2)} | {spread(theirs, 2)} |")
        print()

    for key in sorted(k for k in results if k[0] == "idle"):
        print(f"Idle, {key[1]:,} subscribed connections:\n")
        print("| | stompbridge | Web-STOMP | ratio |")
        print("| --- | ---: | ---: | ---: |")
        ours = values(key, "stompbridge", "rss_per_connection_bytes")
        theirs = values(key, "web-stomp", "rss_per_connection_bytes")
        print(f"| RSS per connection (bytes) | {spread(ours)} | {spread(theirs)} | {ratio(ours, theirs, False)} |")
        ours = values(key, "stompbridge", "connections_per_second")
        theirs = values(key, "web-stomp", "connections_per_second")
        print(f"| connections accepted/s | {spread(ours)} | {spread(theirs)} | {ratio(ours, theirs)} |")
        print()

    print_goals(lines)

    if errors:
        print("Failed cases:\n")
        for line in errors:
            print(f"- {line['server']}, run {line['run']}, {line['mode']} {line['arguments']}: {line['error']}")


def print_goals(lines):
    """Prints the goal figures of each run, so every ratio compares one run."""
    by_run = defaultdict(dict)
    for line in lines:
        if "error" not in line:
            by_run[line["run"]][(line["server"],) + case(line)] = line

    def get(run, key, field, sub=None):
        line = by_run[run].get(key)
        if line is None:
            return None
        return line[field][sub] if sub else line[field]

    print("| run | 1 sub vs raw AMQP | 1,000 subs vs Web-STOMP | p99 at 1,000 subs, fixed rate | RSS per idle connection | connections/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in sorted(by_run):
        keys = by_run[run].keys()
        amqp = next((get(run, k, "messages_per_second") for k in keys if k[0] == "amqp"), None)
        single = get(run, ("stompbridge", "throughput", 1), "delivered_per_second")
        ours = get(run, ("stompbridge", "throughput", 1000), "delivered_per_second")
        theirs = get(run, ("web-stomp", "throughput", 1000), "delivered_per_second")
        p99 = get(run, ("stompbridge", "latency", 1000), "latency_ms", "p99")
        idle = next((k for k in keys if k[:2] == ("stompbridge", "idle")), None)
        rss = get(run, idle, "rss_per_connection_bytes") if idle else None
        rate = get(run, idle, "connections_per_second") if idle else None
        baseline = f"{single:,.0f} / {amqp:,.0f} = {single / amqp:.0%}" if single and amqp else "n/a"
        rival = f"{ours:,.0f} / {theirs:,.0f} = {ours / theirs:.1f}×" if ours and theirs else "n/a"
        latency = f"{p99:.2f} ms" if p99 is not None else "n/a"
        memory = f"{rss:,} B" if rss is not None else "n/a"
        connects = f"{rate:,.0f}" if rate is not None else "n/a"
        print(f"| {run} | {baseline} | {rival} | {latency} | {memory} | {connects} |")
    print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
