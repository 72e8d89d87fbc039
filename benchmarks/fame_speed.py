"""How much faster is the workbook's FAME (and CorrRISE, FGGB) than the straightforward loop, and do the maps agree?

In ONE process, with the two paths interleaved round by round (the machine may be shared; the best
round of each path is kept), it prints for the shipped networks:

* FAME seconds per image-iteration, straightforward (the network as loaded, fp32, NCHW, one sample per run, fixed
  iterations) vs the workbook's path (BatchNorm folded, channels_last, photos / locations / pairs batched as the
  notebooks batch them, fp32)
  and the opt-in bf16 path: the ratio and the Spearman rank correlation of the maps — Lite0 class maps,
  Lite0 feature-map locations, SFace e₊/e₋;
* the bare forward + input-gradient time of the same loss, batch and layout, so the loop's overhead is visible;
* CorrRISE per face at the old batch of 250 masks vs the current default, and FGGB with D backward passes
  per face (NCHW, as before) vs D backward passes shared by a batch of faces in channels_last.

Nothing is asserted: timings depend on the machine. The defaults are sized so the whole script finishes in about
ten minutes on two busy cores; raise them on a quiet machine for steadier ratios. Usage:
``python benchmarks/fame_speed.py [--iterations 5] [--locations 4] [--batch 4] [--rounds 2] [--masks 50]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from scipy.stats import spearmanr
from torch import nn

from fame_utils.baselines.gradient import FGGB_BATCH, fggb, fggb_gradients
from fame_utils.baselines.perturbation import corrrise, corrrise_masks
from fame_utils.data import face_pairs, object_images
from fame_utils.fame import FameConfig, all_locations, explain_class, explain_locations, explain_verification
from fame_utils.fame.losses import class_loss, location_loss, verification_loss
from fame_utils.fame.optimizer import SampleLoss
from fame_utils.models import load_model
from fame_utils.runtime import balanced_chunks

STRAIGHT = {"memory_format": "nchw"}
PATHS = {"workbook fp32": {}, "workbook bf16 (opt-in)": {"precision": "bf16"}}


class AsLoaded(nn.Module):
    """The network exactly as loaded (a wrapper ``fame_utils`` does not fold): what the straightforward path runs."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def best_of(rounds: int, runs: dict[str, Callable[[], torch.Tensor]]) -> dict[str, tuple[float, torch.Tensor]]:
    """Best wall time and result of each run, the runs interleaved round by round."""
    best: dict[str, tuple[float, torch.Tensor]] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            result = run()
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, result)
    return best


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean Spearman ρ over the maps of two (N, H, W) stacks; two identical maps count as 1 (also when constant,
    e.g. an FGGB e₊ that is zero everywhere, where ρ is undefined)."""
    rhos = [1.0 if torch.equal(x, y) else spearmanr(x.flatten().numpy(), y.flatten().numpy())[0] for x, y in zip(a, b)]
    return float(sum(rhos) / len(rhos))


FLOOR = "floor"


def floor_run(loss: SampleLoss, batch: torch.Tensor, steps: int, repeat: int = 1) -> Callable[[], torch.Tensor]:
    """Bare forward + input gradient of ``loss`` on ``batch`` (channels_last), ``steps`` × ``repeat`` times.

    The physical floor of a FAME run: the same loss and batch with no loop around it (no early-stopping
    bookkeeping, no step, no map). ``repeat`` covers runs made of several batches (chunks, e₊ and e₋).
    """
    x = batch.contiguous(memory_format=torch.channels_last)

    def run() -> torch.Tensor:
        for _ in range(steps * repeat):
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(leaf).sum(), leaf)
        return grad

    return run


def report(title: str, samples: int, iterations: int, timed: dict[str, tuple[float, torch.Tensor]]) -> None:
    floor = timed.pop(FLOOR)[0] if FLOOR in timed else None
    straight_seconds, straight_maps = timed["straightforward"]
    print(f"\n{title}: {samples} maps × {iterations} iterations")
    for name, (seconds, maps) in timed.items():
        per = seconds / (samples * iterations)
        line = f"  {name:24s} {per * 1e3:8.1f} ms/image-iteration  speed-up x{straight_seconds / seconds:5.2f}  Spearman {rank_correlation(straight_maps, maps):.4f}"
        if floor is not None and name == "workbook fp32":
            line += f"  loop overhead {100 * (seconds / floor - 1):+.0f} % over forward+input-gradient"
        print(line)


def one_at_a_time(explain: Callable[[int], torch.Tensor], count: int) -> torch.Tensor:
    """The straightforward loop: one sample per run, results stacked."""
    return torch.cat([explain(index) for index in range(count)])


def fame_class(spec, images: torch.Tensor, targets: list[int], args: argparse.Namespace) -> None:
    base = FameConfig(iterations=args.iterations)
    count = len(targets)
    straight = base.replace(**STRAIGHT)
    loaded = AsLoaded(spec.module).eval()
    runs = {"straightforward": lambda: one_at_a_time(lambda i: explain_class(loaded, images[i:i + 1], targets[i:i + 1], straight), count)}
    runs |= {name: (lambda c=base.replace(**changes): explain_class(spec.module, images, targets, c)) for name, changes in PATHS.items()}
    runs[FLOOR] = floor_run(class_loss(spec.module, targets), images, args.iterations)
    report(f"FAME Lite0 class ({count} photos in one batch, as notebook 04)", count, args.iterations, best_of(args.rounds, runs))


def fame_locations(spec, image: torch.Tensor, args: argparse.Namespace) -> None:
    locations = all_locations((7, 7))[: args.locations]
    base = FameConfig(iterations=args.iterations)
    loaded, layer = AsLoaded(spec.module).eval(), f"network.{spec.target_layer}"
    runs = {"straightforward": lambda: explain_locations(loaded, layer, image, locations, base.replace(**STRAIGHT), batch_size=1)}
    runs |= {
        name: (lambda c=base.replace(**changes): explain_locations(spec.module, spec.target_layer, image, locations, c, batch_size=args.batch))
        for name, changes in PATHS.items()
    }
    chunks = balanced_chunks(len(locations), args.batch)
    size = len(locations[chunks[0]])  # the workbook's batches differ from this by at most one location
    loss = location_loss(spec.module, spec.target_layer, locations[:size])
    runs[FLOOR] = floor_run(loss, image[None].expand(size, -1, -1, -1), args.iterations, len(chunks))
    report(f"FAME Lite0 locations (batch {args.batch})", len(locations), args.iterations, best_of(args.rounds, runs))


def fame_faces(spec, probes: torch.Tensor, galleries: torch.Tensor, args: argparse.Namespace) -> None:
    base = FameConfig(iterations=args.iterations)
    count = probes.shape[0]

    def both(model: nn.Module, config: FameConfig, probe: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        maps = explain_verification(model, probe, gallery, config)
        return torch.cat([maps["similar"], maps["dissimilar"]])

    straight, loaded = base.replace(**STRAIGHT), AsLoaded(spec.module).eval()
    runs = {"straightforward": lambda: torch.cat([both(loaded, straight, probes[i:i + 1], galleries[i:i + 1]) for i in range(count)])}
    runs |= {name: (lambda c=base.replace(**changes): both(spec.module, c, probes, galleries)) for name, changes in PATHS.items()}
    with torch.no_grad():
        references = spec.module(galleries)
    runs[FLOOR] = floor_run(verification_loss(spec.module, references), probes, args.iterations, repeat=2)
    timed = best_of(args.rounds, runs)
    # The straightforward run stacks (e+, e-) per pair, the batched one all e+ then all e-: same order for the comparison.
    seconds, maps = timed["straightforward"]
    timed["straightforward"] = (seconds, torch.cat([maps[0::2], maps[1::2]]))
    report(f"FAME SFace e+/e- ({count} pairs in one call, as notebook 05)", 2 * count, args.iterations, timed)


def baselines(spec, probes: torch.Tensor, galleries: torch.Tensor, args: argparse.Namespace) -> None:
    probe, gallery = probes[0], galleries[0]
    masks = corrrise_masks(args.masks, tuple(probe.shape[-2:]))
    loaded = AsLoaded(spec.module).eval()
    corr = {
        "straightforward": lambda: corrrise(loaded, probe[None], gallery[None], masks=masks, batch_size=250)["similar"],
        "workbook": lambda: corrrise(spec.module, probe[None], gallery[None], masks=masks)["similar"],
    }
    timed = best_of(args.rounds, corr)
    print(f"\nCorrRISE SFace, {args.masks} masks per face (as loaded, batch 250 = before; folded, default batch = now)")
    for name, (seconds, maps) in timed.items():
        print(f"  {name:24s} {seconds:6.2f} s/face  speed-up x{timed['straightforward'][0] / seconds:5.2f}  Spearman {rank_correlation(timed['straightforward'][1], maps):.4f}")
    count = len(probes)
    grads = {
        "straightforward": lambda: torch.stack([fggb_gradients(loaded, face[None])[0, :, 0, 0, 0] for face in probes]),
        "one face per pass": lambda: fggb(spec.module, probes, galleries, 0.3, batch_size=1)["similar"],
        "workbook": lambda: fggb(spec.module, probes, galleries, 0.3)["similar"],
    }
    timed = best_of(args.rounds, grads)
    print(f"\nFGGB SFace, {count} faces (straightforward = the network as loaded, D backward passes per face, NCHW, the Jacobian alone; "
          f"one face per pass = channels_last maps; workbook = {FGGB_BATCH} faces per backward pass)")
    reference = timed["one face per pass"][1]
    for name, (seconds, maps) in timed.items():
        agreement = "" if name == "straightforward" else f"  Spearman to one face per pass {rank_correlation(reference, maps):.4f}"
        print(f"  {name:24s} {seconds / count:6.2f} s/face  speed-up x{timed['straightforward'][0] / seconds:5.2f}{agreement}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--locations", type=int, default=4, help="first N of the 49 Lite0 locations")
    parser.add_argument("--batch", type=int, default=4, help="locations per batch on the workbook path")
    parser.add_argument("--photos", type=int, default=4, help="photos explained together (notebook 04 batches 4)")
    parser.add_argument("--pairs", type=int, default=8, help="face pairs explained together (explain_verification's batch)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--masks", type=int, default=50, help="CorrRISE masks per face (the workbook uses 500)")
    parser.add_argument("--only", choices=["class", "locations", "faces", "baselines"], nargs="*")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    only = set(args.only or ["class", "locations", "faces", "baselines"])
    if only & {"class", "locations"}:
        lite0 = load_model("efficientnet_lite0", device="cpu")
        photos = object_images()[: args.photos]
        images = torch.stack([lite0.preprocess(photo.image) for photo in photos])
        if "class" in only:
            fame_class(lite0, images, [int(photo.classes[0]) for photo in photos], args)
        if "locations" in only:
            fame_locations(lite0, images[0], args)
    if only & {"faces", "baselines"}:
        sface = load_model("sface", device="cpu")
        pairs = face_pairs()[: args.pairs]
        probes = torch.stack([sface.preprocess(pair.probe) for pair in pairs])
        galleries = torch.stack([sface.preprocess(pair.gallery) for pair in pairs])
        if "faces" in only:
            fame_faces(sface, probes, galleries, args)
        if "baselines" in only:
            baselines(sface, probes, galleries, args)
    print(f"\nwhole script: {time.perf_counter() - started:.0f} s wall")


if __name__ == "__main__":
    main()
