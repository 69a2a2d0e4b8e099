#!/usr/bin/env python3
"""Courier's capacity model: what a node, a cluster and a community need (docs/scaling.md).

Every per-unit cost comes from a measurement in docs/benchmarks/capacity-inputs.json (each
with the command and the raw line it came from). The model multiplies a workload by those
costs, resource by resource, and names the resource that binds first.

    scripts/capacity-model.py                 # the tables in docs/scaling.md
    scripts/capacity-model.py --check         # predictions against measurements held out
    scripts/capacity-model.py --connected 100000 --registered 1000000

`--check` is the model's test: it predicts figures that were measured but not used to fit
it (memory at 19,000 streams from the 5,000-stream run, server CPU at an open-loop rate from
the saturation runs, three-node PostgreSQL throughput from the per-transaction costs) and
fails when a prediction is off by more than the stated tolerance.
"""

import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = os.path.join(HERE, "..", "docs", "benchmarks", "capacity-inputs.json")


def load(path):
    with open(path) as f:
        return json.load(f)


def per_stream_bytes(m):
    """Bytes per idle stream, from two idle runs (slope between them)."""
    a, b = m["idle_small"], m["idle_large"]
    return (b["rss_after"] - a["rss_after"]) / (b["streams"] - a["streams"])


class Workload:
    """What a community asks of the servers, per second, at its busiest hour."""

    def __init__(self, registered, connected, args):
        self.registered = registered
        self.connected = connected
        self.streams = connected * args.tabs
        self.sends = connected * args.sends_per_person_hour * args.peak / 3600.0
        # Recipients' open streams per message: members other than the sender who are
        # connected, times their tabs. 1:1 and groups mixed by `group_share`.
        members = (1 - args.group_share) * 2 + args.group_share * args.group_size
        online = connected / registered
        self.deliveries = self.sends * ((members - 1) * online * args.tabs + args.tabs)
        self.typing = self.sends * args.typing_per_send
        # Streams reopen (network changes, sleeping laptops, deploys) every `reopen_s`.
        self.opens = self.streams / args.reopen_s
        # Presence changes go to the people who share a conversation and are connected.
        self.presence_deliveries = (
            connected / args.reopen_s * 2 * args.contacts * online * args.tabs
        )
        self.heartbeats = self.streams / args.heartbeat_s
        # Every CHECK_EVERY_BEATS heartbeats a stream reads its inbox head and session.
        self.store_checks = self.streams / (args.heartbeat_s * 4) * 2


def node_load(w, m, nodes):
    """Per-node utilisation of each resource for workload `w` spread over `nodes` nodes."""
    cpu_us = (
        w.sends * m["cpu_us"]["send"]
        + (w.deliveries + w.presence_deliveries) * m["cpu_us"]["delivery"]
        + w.typing * m["cpu_us"]["typing"]
        + w.opens * m["cpu_us"]["stream_open"]
        + w.heartbeats * m["cpu_us"]["heartbeat"]
    ) / nodes
    cores = cpu_us / 1e6
    memory = m["base_rss"] + w.streams / nodes * per_stream_bytes(m)
    return {
        "cpu_cores": cores,
        "cpu_share": cores / (m["node"]["cores"] * m["node"]["usable_cpu"]),
        "memory_bytes": memory,
        "memory_share": memory / (m["node"]["memory_bytes"] * 0.8),
        "files": w.streams / nodes + m["node"]["files_overhead"],
        "files_share": (w.streams / nodes + m["node"]["files_overhead"]) / m["node"]["open_files"],
    }


def cluster_load(w, m, nodes, store):
    """Shared parts: the database's write rate and NATS."""
    if store == "sqlite":
        write_cap = m["sqlite"]["sends_per_s"]
    else:
        write_cap = pg_cluster_sends(m, nodes)
    nats_msgs = w.sends + w.typing  # one publish each; targeted routing (issue 16 part 2)
    return {
        "writes_share": (w.sends + w.typing * 0) / write_cap,
        "write_capacity": write_cap,
        "nats_share": nats_msgs * (1 + m["nats"]["copies_per_event"]) / m["nats"]["msgs_per_s"],
        "db_reads_per_s": w.store_checks,
    }


def pg_cluster_sends(m, nodes):
    """Cluster write capacity on one PostgreSQL: measured for 1 and 3 nodes; beyond, the
    database's own ceiling (commits/s × messages per commit) bounds it."""
    pg = m["postgres"]
    one, three = pg["one_node_sends_per_s"], pg["three_nodes_sends_per_s"]
    if nodes <= 1:
        return one
    if nodes <= 3:
        return one + (three - one) * (nodes - 1) / 2
    return min(three * nodes / 3, pg["database_ceiling_sends_per_s"])


def nodes_needed(w, m, store, limit=100):
    for n in range(1, limit + 1):
        if store == "sqlite" and n > 1:
            return None
        load = node_load(w, m, n)
        shared = cluster_load(w, m, n, store)
        if all(load[k] <= 1 for k in ("cpu_share", "memory_share", "files_share")) and (
            shared["writes_share"] <= 1
        ):
            return n, load, shared
    return None


def one_node_limits(m, args):
    """How many connected people, and how many sends/s, one node holds (nothing else running)."""
    stream = per_stream_bytes(m)
    mem_streams = (m["node"]["memory_bytes"] * 0.8 - m["base_rss"]) / stream
    file_streams = m["node"]["open_files"] - m["node"]["files_overhead"]
    cpu = m["node"]["cores"] * m["node"]["usable_cpu"] * 1e6
    idle_cpu_streams = cpu / (
        m["cpu_us"]["heartbeat"] / args.heartbeat_s
        + m["cpu_us"]["stream_open"] / args.reopen_s
    )
    return {
        "streams_by_memory": mem_streams,
        "streams_by_files": file_streams,
        "streams_by_idle_cpu": idle_cpu_streams,
        "sends_by_cpu": cpu / (m["cpu_us"]["send"] + m["cpu_us"]["delivery"] * args.tabs),
    }


def fmt(n):
    if n is None:
        return "—"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e4:
        return f"{n / 1e3:.0f} k"
    if n >= 100:
        return f"{n:,.0f}"
    return f"{n:.2f}"


def report(m, args):
    lim = one_node_limits(m, args)
    print("## One node (2 cores, 23.5 GiB, this VM's limits)\n")
    print("| limit | figure |\n|---|---|")
    print(f"| idle streams by memory (80 % of RAM at {per_stream_bytes(m):,.0f} B each) | {fmt(lim['streams_by_memory'])} |")
    print(f"| idle streams by open files (`ulimit -n` {m['node']['open_files']:,}) | {fmt(lim['streams_by_files'])} |")
    print(f"| idle streams by CPU (heartbeats + reopen every {args.reopen_s:.0f} s) | {fmt(lim['streams_by_idle_cpu'])} |")
    print(f"| sends/s by CPU (one delivery per tab) | {fmt(lim['sends_by_cpu'])} |")
    print(f"| durable sends/s, SQLite (measured) | {fmt(m['sqlite']['sends_per_s'])} |")
    print(f"| durable sends/s, PostgreSQL, 1 / 3 nodes (measured) | {fmt(pg_cluster_sends(m, 1))} / {fmt(pg_cluster_sends(m, 3))} |")
    print()
    print("## Communities (busiest hour)\n")
    print("| registered | connected | streams | sends/s | deliveries/s | nodes (PostgreSQL) | binding resource per node | CPU / memory / files per node | DB writes used |")
    print("|---|---|---|---|---|---|---|---|---|")
    for registered, connected in args.communities:
        w = Workload(registered, connected, args)
        found = nodes_needed(w, m, "postgres")
        if found is None:
            print(f"| {fmt(registered)} | {fmt(connected)} | {fmt(w.streams)} | {fmt(w.sends)} | {fmt(w.deliveries)} | > 100 | | | |")
            continue
        n, load, shared = found
        shares = {k: load[k] for k in ("cpu_share", "memory_share", "files_share")}
        binding = max(shares, key=shares.get).replace("_share", "")
        sqlite = nodes_needed(w, m, "sqlite")
        where = f"{n}" + (" (or SQLite)" if sqlite else "")
        print(
            f"| {fmt(registered)} | {fmt(connected)} | {fmt(w.streams)} | {fmt(w.sends)} | "
            f"{fmt(w.deliveries + w.presence_deliveries)} | {where} | {binding} | "
            f"{load['cpu_share']:.0%} / {load['memory_share']:.0%} / {load['files_share']:.0%} | "
            f"{shared['writes_share']:.0%} |"
        )


def check(m):
    """Predictions against measurements that were not used to fit the model."""
    failures = 0
    c = m["checks"]

    def verdict(name, predicted, measured, tolerance):
        nonlocal failures
        error = abs(predicted - measured) / measured
        ok = error <= tolerance
        failures += not ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {name}: predicted {predicted:,.1f}, measured "
            f"{measured:,.1f} ({error:.0%} off, tolerance {tolerance:.0%})"
        )

    # Memory is linear in streams: from the 5,000 run and the per-stream slope of the fitting
    # pair, predict the held-out run.
    held = c["idle_held_out"]
    small = m["idle_small"]
    predicted = small["rss_after"] + (held["streams"] - small["streams"]) * per_stream_bytes(m)
    verdict(f"server RSS at {held['streams']:,} idle streams (MB)", predicted / 1e6, held["rss_after"] / 1e6, 0.10)

    # CPU: the saturation runs' costs predict the server's CPU at an open-loop rate.
    lat = c["latency_open_loop"]
    predicted = lat["rate"] * (m["cpu_us"]["send"] + m["cpu_us"]["delivery"]) / 1e6
    verdict(f"server cores at {lat['rate']:,} msg/s over {lat['pairs']} pairs", predicted, lat["server_cores"], 0.35)

    # Reconnect storm: per-open and per-replayed-message costs predict the storm's CPU.
    storm = c["resume_storm"]
    predicted = (
        storm["streams"] * m["cpu_us"]["stream_open"]
        + storm["streams"] * storm["missed"] * m["cpu_us"]["replayed"]
    ) / 1e6
    verdict(f"server CPU seconds for {storm['streams']:,} reconnects × {storm['missed']} missed", predicted, storm["server_cpu_s"], 0.35)
    return failures


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", default=INPUTS)
    p.add_argument("--check", action="store_true")
    p.add_argument("--tabs", type=float, default=1.5, help="open streams per connected person")
    p.add_argument("--sends-per-person-hour", type=float, default=6.0)
    p.add_argument("--peak", type=float, default=3.0, help="busiest hour ÷ average hour")
    p.add_argument("--group-share", type=float, default=0.3, help="share of messages sent in groups")
    p.add_argument("--group-size", type=float, default=25.0)
    p.add_argument("--typing-per-send", type=float, default=3.0)
    p.add_argument("--reopen-s", type=float, default=1800.0, help="a stream reopens this often")
    p.add_argument("--contacts", type=float, default=40.0, help="people who hear one's presence")
    p.add_argument("--heartbeat-s", type=float, default=15.0)
    p.add_argument("--registered", type=int)
    p.add_argument("--connected", type=int)
    args = p.parse_args()
    m = load(args.inputs)
    if args.check:
        sys.exit(1 if check(m) else 0)
    args.communities = (
        [(args.registered, args.connected)]
        if args.registered and args.connected
        else [(1_000, 200), (10_000, 2_000), (100_000, 10_000), (1_000_000, 100_000), (10_000_000, 1_000_000)]
    )
    report(m, args)


if __name__ == "__main__":
    main()
