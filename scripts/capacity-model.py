#!/usr/bin/env python3
"""Courier's capacity model: what one node, a cluster and a community need (docs/scaling.md).

Every cost comes from a measurement in docs/benchmarks/capacity-inputs.json (each with its
command and raw lines). The model multiplies a workload by those costs, resource by
resource, and names the resource that binds first.

    scripts/capacity-model.py            # the tables in docs/scaling.md
    scripts/capacity-model.py --check    # predictions against measurements held out of the fit
    scripts/capacity-model.py --registered 1000000 --connected 100000

`--check` is the model's test: it predicts figures that were measured but not used to fit
it (server memory at 19,000 streams from the 5,000 and 10,000 runs; server CPU under a
saturating closed-loop `send` from three open-loop runs) and exits non-zero when a
prediction is further off than its tolerance.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = os.path.join(HERE, "..", "docs", "benchmarks", "capacity-inputs.json")


def per_stream_bytes(m):
    """Server memory per idle stream: the slope between the two fitting runs."""
    a, b = m["idle_small"], m["idle_large"]
    return (b["rss_after"] - a["rss_after"]) / (b["streams"] - a["streams"])


def cpu_fit(m):
    """Server cores at `r` requests/s = r·per_message + min(r, max_batches)·per_batch.

    A node that is woken for one request pays for the wake-up, the writer's transaction and
    its sync alone; under load those are shared by everything that queued meanwhile (group
    commit, batched wake-ups). Fitted to three open-loop runs: the slowest below the batching
    point, the two faster above it."""
    (r1, c1), (r2, c2), (r3, c3) = m["cpu"]["points"]
    per_message = (c3 - c2) / (r3 - r2)
    per_batch = c1 / r1 - per_message
    max_batches = (c2 - r2 * per_message) / per_batch
    return per_message, per_batch, max_batches


def node_cores(m, requests, extra_deliveries, streams):
    per_message, per_batch, max_batches = cpu_fit(m)
    return (
        requests * per_message
        + min(requests, max_batches) * per_batch
        + extra_deliveries * m["cpu"]["delivery_us"] / 1e6
        + streams * m["cpu"]["idle_stream_us_per_s"] / 1e6
    )


class Workload:
    """What a community asks of its servers per second at its busiest hour."""

    def __init__(self, registered, connected, args):
        online = connected / registered
        self.connected = connected
        self.streams = connected * args.tabs
        self.sends = connected * args.sends_per_person_hour * args.peak / 3600.0
        members = (1 - args.group_share) * 2 + args.group_share * args.group_size
        # Each send reaches the connected members' tabs (the sender's other tabs included).
        self.deliveries = self.sends * ((members - 1) * online + 1) * args.tabs
        self.typing = self.sends * args.typing_per_send
        self.opens = self.streams / args.reopen_s
        # An open or a close is heard by the connected people one shares a conversation with.
        self.presence_deliveries = 2 * self.opens * args.contacts * online * args.tabs
        self.requests = self.sends + self.typing + self.opens


def plan(w, m, nodes, store):
    streams = w.streams / nodes
    people = w.connected / nodes
    extra = (w.deliveries + w.presence_deliveries + w.typing * 2) / nodes - w.sends / nodes
    cores = node_cores(m, w.requests / nodes, max(extra, 0), streams)
    memory = m["base_rss"] + streams * per_stream_bytes(m)
    if store == "postgres":
        # One NATS subscription per connected person (issue 16 part 2's targeted routing).
        memory += people * m["nats"]["subscription_bytes_per_user"]
    files = streams + m["node"]["files_overhead"]
    writes = m["sqlite"]["sends_per_s"] if store == "sqlite" else pg_writes(m, nodes)
    return {
        "cpu": cores / (m["node"]["cores"] * m["node"]["usable_cpu"]),
        "memory": memory / (m["node"]["memory_bytes"] * 0.8),
        "files": files / m["node"]["open_files"],
        "writes": w.sends / writes,
        "cores": cores,
        "memory_bytes": memory,
    }


def pg_writes(m, nodes):
    """Cluster sends/s on one PostgreSQL. Measured for one and three nodes sharing one 2-core
    machine with PostgreSQL, NATS and the client; beyond three the measured three-node figure
    is kept (a floor: nodes on machines of their own were not measured)."""
    pg = m["postgres"]
    return pg["one_node_sends_per_s"] if nodes == 1 else pg["three_nodes_sends_per_s"]


def nodes_needed(w, m):
    if all(v <= 1 for k, v in plan(w, m, 1, "sqlite").items() if k in ("cpu", "memory", "files", "writes")):
        return 1, "sqlite", plan(w, m, 1, "sqlite")
    for n in range(1, 1001):
        p = plan(w, m, n, "postgres")
        if all(p[k] <= 1 for k in ("cpu", "memory", "files", "writes")):
            return n, "postgres", p
        if p["writes"] > 1:
            return None, "postgres", p
    return None, "postgres", p


def fmt(n):
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e4:
        return f"{n / 1e3:.0f} k"
    return f"{n:,.0f}"


def report(m, args):
    per_message, per_batch, max_batches = cpu_fit(m)
    stream = per_stream_bytes(m)
    usable = m["node"]["cores"] * m["node"]["usable_cpu"]
    print(f"## One node (this VM: 2 cores, 23.5 GiB, {m['node']['open_files']:,} open files)\n")
    print("| limit | figure | from |\n|---|---|---|")
    print(f"| memory per idle stream | {stream:,.0f} B | slope of the 5,000 and 10,000-stream runs |")
    print(f"| idle streams by memory (80 % of RAM) | {fmt((m['node']['memory_bytes'] * 0.8 - m['base_rss']) / stream)} | |")
    print(f"| idle streams by open files | {fmt(m['node']['open_files'] - m['node']['files_overhead'])} | `ulimit -n` |")
    print(f"| idle streams by CPU ({m['node']['usable_cpu']:.0%} of both cores) | {fmt(usable * 1e6 / m['cpu']['idle_stream_us_per_s'])} | {m['cpu']['idle_stream_us_per_s']} µs per stream per second |")
    print(f"| CPU per message (send + one delivery) | {per_message * 1e6:.0f} µs + {per_batch * 1e6:.0f} µs per batch, at most {max_batches:,.0f} batches/s | fitted to three open-loop runs |")
    print(f"| durable sends/s, SQLite | {fmt(m['sqlite']['sends_per_s'])} | `send -c 64` |")
    print(f"| durable sends/s, PostgreSQL, one node / three nodes | {fmt(pg_writes(m, 1))} / {fmt(pg_writes(m, 3))} | `send -c 64`, medians |")
    print()
    print(
        f"Workload at the busiest hour: {args.tabs} tabs per connected person, "
        f"{args.sends_per_person_hour:g} messages per connected person per hour × {args.peak:g} at the peak, "
        f"{args.group_share:.0%} of messages in groups of {args.group_size:g}, {args.typing_per_send:g} typing calls per message, "
        f"a stream reopened every {args.reopen_s / 60:g} min, presence heard by {args.contacts:g} contacts.\n"
    )
    print("| registered | connected | streams | sends/s | deliveries/s | nodes | store | per node: CPU / memory / files | database writes used |")
    print("|---|---|---|---|---|---|---|---|---|")
    for registered, connected in args.communities:
        w = Workload(registered, connected, args)
        n, store, p = nodes_needed(w, m)
        nodes = str(n) if n else "more writes than one PostgreSQL takes here"
        print(
            f"| {fmt(registered)} | {fmt(connected)} | {fmt(w.streams)} | {fmt(w.sends)} | "
            f"{fmt(w.deliveries + w.presence_deliveries)} | {nodes} | {store} | "
            f"{p['cpu']:.0%} / {p['memory']:.0%} / {p['files']:.0%} | {p['writes']:.0%} |"
        )


def check(m):
    failures = 0

    def verdict(name, predicted, measured, tolerance):
        nonlocal failures
        error = abs(predicted - measured) / measured
        ok = error <= tolerance
        failures += not ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {name}: predicted {predicted:,.3f}, measured {measured:,.3f} "
            f"({error:.1%} off, tolerance {tolerance:.0%})"
        )

    held = m["checks"]["idle_held_out"]
    small = m["idle_small"]
    predicted = small["rss_after"] + (held["streams"] - small["streams"]) * per_stream_bytes(m)
    verdict(f"server RSS at {held['streams']:,} idle streams, MB", predicted / 1e6, held["rss_after"] / 1e6, 0.05)

    send = m["checks"]["send_saturated"]
    verdict(f"server cores under `send -c 64` at {send['rate']:,} msg/s", node_cores(m, send["rate"], 0, 0), send["server_cores"], 0.20)
    return failures


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", default=INPUTS)
    p.add_argument("--check", action="store_true")
    p.add_argument("--tabs", type=float, default=1.5, help="open streams per connected person")
    p.add_argument("--sends-per-person-hour", type=float, default=6.0)
    p.add_argument("--peak", type=float, default=3.0, help="busiest hour ÷ average hour")
    p.add_argument("--group-share", type=float, default=0.3)
    p.add_argument("--group-size", type=float, default=25.0)
    p.add_argument("--typing-per-send", type=float, default=3.0)
    p.add_argument("--reopen-s", type=float, default=1800.0)
    p.add_argument("--contacts", type=float, default=40.0)
    p.add_argument("--open-files", type=int, help="instead of this VM's `ulimit -n`")
    p.add_argument("--registered", type=int)
    p.add_argument("--connected", type=int)
    args = p.parse_args()
    with open(args.inputs) as f:
        m = json.load(f)
    if args.open_files:
        m["node"]["open_files"] = args.open_files
    if args.check:
        sys.exit(1 if check(m) else 0)
    args.communities = (
        [(args.registered, args.connected)]
        if args.registered and args.connected
        else [(1_000, 200), (10_000, 2_000), (100_000, 20_000), (1_000_000, 100_000), (10_000_000, 1_000_000)]
    )
    report(m, args)


if __name__ == "__main__":
    main()
