#!/usr/bin/env python3
"""How long this machine's disk takes to sync, without Courier: rewrite 4 KiB of a
preallocated 4 MiB file and fdatasync it, ~2,000 times a second (a single-message send's
rate in the signals bench), and report the distribution and every sync over 10 ms.

usage: fsync-stalls.py [FILE] [SECONDS]   (defaults: ./fsync-stalls.dat, 60)
"""
import os
import sys
import time

path = sys.argv[1] if len(sys.argv) > 1 else "fsync-stalls.dat"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
size, block = 4 << 20, b"x" * 4096
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"\0" * size, 0)
os.fsync(fd)  # allocated and synced: the loop below changes no metadata
offset, durations, slow, start = 0, [], [], time.time()
while time.time() - start < seconds:
    os.pwrite(fd, block, offset)
    offset = (offset + len(block)) % size
    began = time.perf_counter()
    os.fdatasync(fd)
    took = time.perf_counter() - began
    durations.append(took)
    if took > 0.010:
        slow.append((round(time.time() - start, 2), round(took * 1e3, 1)))
    time.sleep(0.0003)
os.close(fd)
os.unlink(path)
durations.sort()
n = len(durations)
q = lambda p: durations[min(n - 1, int(n * p))] * 1e3
print(f"{n} syncs in {seconds:.0f} s: p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, "
      f"p99.9 {q(0.999):.3f} ms, max {durations[-1] * 1e3:.1f} ms")
print("over 10 ms (s into the run, ms):", slow)
