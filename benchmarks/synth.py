"""Benchmark: generating synthetic slides with ``wsdal synth`` (time and peak memory).

Runs the real command (``python -m wsdal_wsi synth OUT --size WxH ...``) in a
subprocess for each size and reports wall time, CPU time of the whole process
tree, throughput in level-0 megapixels per second, the peak resident memory of
the process tree (the sum over the command and its worker processes, sampled
every 0.1 s from ``/proc``) and of its largest process, and the file size.
Memory must stay flat as the slide grows (the image is never held in memory):
compare the 20k x 20k and 50k x 50k rows.

Usage::

    python benchmarks/synth.py [--size 20000x20000 50000x50000] [--workers N]
        [--tmp DIR] [--keep]

Targets (issue 2): 20k x 20k in under a minute on the 2-core build machine with
peak memory under 1 GB; 100k x 100k (``--size 100000x100000``) without memory
growing with the size.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class TreeMemory:
    """Samples the resident memory of a process tree in a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid, self.interval = pid, interval_s
        self.peak_tree = 0
        self.peak_process = 0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            sizes = [_rss_bytes(p) for p in pids]
            self.peak_tree = max(self.peak_tree, sum(sizes))
            self.peak_process = max(self.peak_process, max(sizes, default=0))
            self.max_processes = max(self.max_processes, len(pids))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_one(size: str, workers: int, out_dir: Path) -> dict:
    """Run ``wsdal synth`` once; return the measurements."""
    cmd = [
        sys.executable,
        "-m",
        "wsdal_wsi",
        "synth",
        str(out_dir),
        "--size",
        size,
        "--slides",
        "1",
        "--seed",
        "0",
        "--workers",
        str(workers),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    mem = TreeMemory(proc.pid)
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    mem.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"wsdal synth failed ({proc.returncode}): {' '.join(cmd)}\n{stdout}")
    w, h = (int(v) for v in size.lower().split("x"))
    tiff = next(out_dir.glob("*.tiff"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "size": f"{w} x {h}",
        "megapixels": w * h / 1e6,
        "workers": workers,
        "wall_s": wall,
        "cpu_s": cpu,
        "mp_per_s": w * h / 1e6 / wall,
        "peak_tree_mb": mem.peak_tree / 2**20,
        "peak_process_mb": mem.peak_process / 2**20,
        "processes": mem.max_processes,
        "file_mb": tiff.stat().st_size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        nargs="+",
        default=["20000x20000", "50000x50000"],
        help="slide sizes WxH (level-0 px)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: CPU count)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the slides")
    parser.add_argument("--keep", action="store_true", help="keep the generated slides")
    args = parser.parse_args()
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(load)} at start; python {platform.python_version()}"
    )
    rows = []
    for size in args.size:
        tmp = Path(tempfile.mkdtemp(prefix="wsdal-synth-bench-", dir=args.tmp))
        try:
            rows.append(run_one(size, args.workers, tmp))
        finally:
            if not args.keep:
                for p in sorted(tmp.rglob("*"), reverse=True):
                    p.unlink() if p.is_file() else p.rmdir()
                tmp.rmdir()
            else:
                print(f"kept {tmp}")
        r = rows[-1]
        print(f"  {r['size']}: {r['wall_s']:.1f} s", flush=True)
    print()
    print(
        "| size (px) | MP | workers | wall (s) | CPU (s) | MP/s | peak RSS tree (MB) "
        "| peak RSS one process (MB) | processes | file (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} | {r['megapixels']:.0f} | {r['workers']} | {r['wall_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {r['mp_per_s']:.1f} | {r['peak_tree_mb']:.0f} "
            f"| {r['peak_process_mb']:.0f} | {r['processes']} | {r['file_mb']:.0f} |"
        )
    with open("/proc/loadavg") as fh:
        print(f"load average at end: {' '.join(fh.read().split()[:3])}")


if __name__ == "__main__":
    main()
