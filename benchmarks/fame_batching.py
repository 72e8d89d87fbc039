"""How much does batching feature-map locations speed FAME up, and does it change the maps?

Runs ``explain_locations`` on EfficientNet-Lite0 (shipped weights) for the same locations with several
batch sizes and prints seconds, the speed-up over batch size 1 and the largest map difference (the
per-sample early stopping makes batching exact up to floating-point noise). Nothing is asserted:
timings depend on the machine.

Usage: ``python benchmarks/fame_batching.py [--iterations 10] [--locations 8] [--batch-sizes 1 4 8]``
"""

from __future__ import annotations

import argparse
import time

import torch

from fame_utils.data import object_images
from fame_utils.fame import FameConfig, all_locations, explain_locations
from fame_utils.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--locations", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    spec = load_model("efficientnet_lite0", device="cpu")
    image = spec.preprocess(object_images()[0].image)
    locations = all_locations((7, 7))[: args.locations]
    config = FameConfig(iterations=args.iterations)
    reference, baseline = None, None
    print(f"Lite0, {len(locations)} locations, T = {args.iterations}, {torch.get_num_threads()} threads")
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        maps = explain_locations(spec.module, spec.target_layer, image, locations, config, batch_size=batch_size)
        seconds = time.perf_counter() - start
        reference = maps if reference is None else reference
        baseline = seconds if baseline is None else baseline
        difference = float((maps - reference).abs().max())
        print(f"batch {batch_size:3d}: {seconds:7.2f} s  speed-up x{baseline / seconds:4.2f}  max |map - batch {args.batch_sizes[0]}| = {difference:.2e}")


if __name__ == "__main__":
    main()
