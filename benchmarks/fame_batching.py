"""How much does batching feature-map locations speed FAME up, and does it change the maps?

Runs ``explain_locations`` on shipped networks for the same locations of notebook 03's photo with several
batch sizes (each run splits the locations into the fewest balanced batches of at most that size) and prints
seconds per location-iteration, the speed-up over the first batch size and the largest map difference (the
per-sample early stopping makes batching exact up to floating-point noise). The batch sizes are interleaved
round by round and the best round is kept. Nothing is asserted: timings depend on the machine.

Usage: ``python benchmarks/fame_batching.py [--networks efficientnet_lite0 sface] [--iterations 10]
[--locations 0] [--batch-sizes 16 8 4] [--rounds 2]`` (``--locations 0`` = every location of the CAM layer).
"""

from __future__ import annotations

import argparse
import time

import torch

from fame_utils.data import object_images
from fame_utils.fame import FameConfig, all_locations, explain_locations, feature_grid
from fame_utils.models import load_model
from fame_utils.workbook.nb03_atlas import atlas_input


def network_report(name: str, args: argparse.Namespace) -> None:
    """Time every batch size on one network and print one line per size."""
    spec = load_model(name, device="cpu")
    image = atlas_input(spec, object_images()[1].image)
    locations = all_locations(feature_grid(spec.module, spec.target_layer, image))
    locations = locations[: args.locations] if args.locations else locations
    config = FameConfig(iterations=args.iterations)
    best: dict[int, tuple[float, torch.Tensor]] = {}
    for _ in range(args.rounds):
        for batch_size in args.batch_sizes:
            start = time.perf_counter()
            maps = explain_locations(spec.module, spec.target_layer, image, locations, config, batch_size=batch_size)
            seconds = time.perf_counter() - start
            if batch_size not in best or seconds < best[batch_size][0]:
                best[batch_size] = (seconds, maps)
    first_seconds, first_maps = best[args.batch_sizes[0]]
    print(f"\n{name}: {len(locations)} locations, T = {args.iterations}")
    for batch_size, (seconds, maps) in best.items():
        per = 1e3 * seconds / (len(locations) * args.iterations)
        difference = float((maps - first_maps).abs().max())
        print(f"  at most {batch_size:3d} per batch: {per:6.1f} ms/location-iteration  speed-up x{first_seconds / seconds:4.2f}  "
              f"max |map - batch {args.batch_sizes[0]}| = {difference:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=["efficientnet_lite0"])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--locations", type=int, default=8, help="first N locations of the CAM layer (0 = all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 8, 4])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name in args.networks:
        network_report(name, args)


if __name__ == "__main__":
    main()
