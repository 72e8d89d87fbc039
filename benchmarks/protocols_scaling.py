"""How much faster is a protocol run on 2 torchrun ranks than in 1 process, on this machine?

Runs the same small ``shipped_objects`` protocol (EfficientNet-Lite0, Grad-CAM and FAME) into fresh folders:
as one process on all cores (the default), as one process on one thread, and under ``torchrun --standalone
--nproc_per_node=2`` (gloo; each rank takes half the cores). Prints each run's wall time and items/s from its
manifest, and the 2-rank / 1-process throughput ratios. Nothing is asserted: on a machine shared with other work
the ratios say little.

Usage: ``python benchmarks/protocols_scaling.py [--iterations 10] [--subset 6]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _launch(prefix: list[str], arguments: list[str], out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    finished = subprocess.run([*prefix, "-m", "fame_utils.protocols", "run", *arguments, "--out", str(out)], capture_output=True, text=True,
                              env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(prefix)} failed:\n{finished.stdout}{finished.stderr}")
    return seconds, json.loads((out / "manifest.json").read_text())["runs"][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--subset", type=int, default=6)
    args = parser.parse_args()
    arguments = ["--protocol", "shipped_objects", "--network", "efficientnet_lite0", "--methods", "Grad-CAM", "FAME",
                 "--iterations", str(args.iterations), "--subset", str(args.subset), "--no-progress"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    launchers = {"1 process": ([sys.executable], []), "1 thread": ([sys.executable], ["--threads", "1"]), "2 ranks": (torchrun, [])}
    rates = {}
    with tempfile.TemporaryDirectory() as scratch:
        print(f"shipped_objects, {args.subset} photos x 2 methods, FAME T = {args.iterations}, {os.cpu_count()} cores")
        for name, (prefix, extra) in launchers.items():
            seconds, run = _launch(prefix, [*arguments, *extra], Path(scratch) / name.replace(" ", "_"))
            rates[name] = run["items_per_second"]
            threads = ", ".join(str(rank["threads"]) for rank in run["ranks"])
            print(f"{name:10s}: {run['computed']} items in {run['seconds']:6.1f} s of run time ({seconds:6.1f} s with start-up), "
                  f"{run['items_per_second']:.3f} items/s, threads per rank: {threads}")
    print(f"throughput ratio 2 ranks / 1 process (all cores): x{rates['2 ranks'] / rates['1 process']:.2f}")
    print(f"throughput ratio 2 ranks / 1 process (1 thread):  x{rates['2 ranks'] / rates['1 thread']:.2f}")


if __name__ == "__main__":
    main()
