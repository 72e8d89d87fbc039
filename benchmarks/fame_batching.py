"""How much does batching feature-map locations (or photos) speed FAME up, and does it change the maps?

Runs ``explain_locations`` on shipped networks for the same locations of notebook 03's photo with several
batch sizes (each run splits the locations into the fewest balanced batches of at most that size) and prints
milliseconds per location-iteration, the speed-up over the first batch size and the largest map difference (the
per-sample early stopping makes batching exact up to floating-point noise). With ``--photos N`` it does the same
for class maps (``explain_class``) of the first N shipped photos, as notebook 04 batches them. The batch sizes are
interleaved round by round and the best round is kept. Nothing is asserted: timings depend on the machine.

Usage: ``python benchmarks/fame_batching.py [--networks efficientnet_lite0 sface] [--iterations 10]
[--locations 0] [--photos 0] [--batch-sizes 16 8 4] [--rounds 2]`` (``--locations 0`` = every location of the CAM
layer, ``-1`` = none; ``--photos 0`` = no class maps).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from fame_utils.data import object_images
from fame_utils.fame import FameConfig, all_locations, explain_class, explain_locations, feature_grid
from fame_utils.models import ModelSpec, load_model
from fame_utils.runtime import balanced_chunks
from fame_utils.workbook.nb03_atlas import atlas_input


def best_by_batch(run: Callable[[int], torch.Tensor], args: argparse.Namespace) -> dict[int, tuple[float, torch.Tensor]]:
    """Best wall seconds and maps of ``run(batch_size)`` per batch size, the sizes interleaved round by round."""
    best: dict[int, tuple[float, torch.Tensor]] = {}
    for _ in range(args.rounds):
        for batch_size in args.batch_sizes:
            start = time.perf_counter()
            maps = run(batch_size)
            seconds = time.perf_counter() - start
            if batch_size not in best or seconds < best[batch_size][0]:
                best[batch_size] = (seconds, maps)
    return best


def print_report(title: str, unit: str, count: int, best: dict[int, tuple[float, torch.Tensor]], args: argparse.Namespace) -> None:
    """One line per batch size: ms per ``unit``-iteration, speed-up and largest map difference to the first size."""
    first_seconds, first_maps = best[args.batch_sizes[0]]
    print(f"\n{title}: {count} {unit}s, T = {args.iterations}")
    for batch_size, (seconds, maps) in best.items():
        per = 1e3 * seconds / (count * args.iterations)
        difference = float((maps - first_maps).abs().max())
        print(f"  at most {batch_size:3d} per batch: {per:6.1f} ms/{unit}-iteration  speed-up x{first_seconds / seconds:4.2f}  "
              f"max |map - batch {args.batch_sizes[0]}| = {difference:.1e}")


def location_report(name: str, spec: ModelSpec, args: argparse.Namespace) -> None:
    """Every batch size on the locations of one network."""
    image = atlas_input(spec, object_images()[1].image)
    locations = all_locations(feature_grid(spec.module, spec.target_layer, image))
    locations = locations[: args.locations] if args.locations else locations
    config = FameConfig(iterations=args.iterations)
    best = best_by_batch(lambda size: explain_locations(spec.module, spec.target_layer, image, locations, config, batch_size=size), args)
    print_report(f"{name} locations", "location", len(locations), best, args)


def class_report(name: str, spec: ModelSpec, args: argparse.Namespace) -> None:
    """Every batch size on the class maps of the first ``args.photos`` photos."""
    photos = object_images()[: args.photos]
    images = torch.stack([spec.preprocess(photo.image) for photo in photos])
    classes = [int(photo.classes[0]) for photo in photos]
    config = FameConfig(iterations=args.iterations)

    def run(size: int) -> torch.Tensor:
        return torch.cat([explain_class(spec.module, images[chunk], classes[chunk], config) for chunk in balanced_chunks(len(classes), size)])

    print_report(f"{name} class maps", "photo", len(classes), best_by_batch(run, args), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=["efficientnet_lite0"])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--locations", type=int, default=8, help="first N locations of the CAM layer (0 = all, -1 = none)")
    parser.add_argument("--photos", type=int, default=0, help="also time class maps of the first N photos (0 = no)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 8, 4])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name in args.networks:
        spec = load_model(name, device="cpu")
        if args.locations >= 0:
            location_report(name, spec, args)
        if args.photos:
            class_report(name, spec, args)


if __name__ == "__main__":
    main()
