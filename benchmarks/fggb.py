"""FGGB: D backward passes per face vs D backward passes shared by a batch of faces.

Runs on the shipped face networks (SFace, dlib ResNet) with ``--faces`` aligned probe crops and prints
seconds per face of the Jacobian computed one face at a time in NCHW (the straightforward way) and of
the maps at several faces per backward pass (``fggb(batch_size=...)``, channels_last), with the ratio
to the straightforward way (> 1 means faster) and the largest map difference to one face per pass.
Timings are machine-specific; nothing is asserted here (the equality of the maps is a unit test).

Usage: ``python benchmarks/fggb.py [--networks sface dlib_resnet] [--faces 8] [--batches 1 4 8] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import time

import torch

from fame_utils.baselines.gradient import fggb, fggb_gradients
from fame_utils.data import face_pairs
from fame_utils.models import load_model


def _seconds(run, repeats: int) -> tuple[float, torch.Tensor]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["sface", "dlib_resnet"])
    parser.add_argument("--faces", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs per variant")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for name in args.networks:
        spec = load_model(name, device="cpu")
        pairs = face_pairs(size=spec.input_size)[: args.faces]
        probes = torch.stack([spec.preprocess(pair.probe) for pair in pairs])
        galleries = torch.stack([spec.preprocess(pair.gallery) for pair in pairs])
        count = len(probes)
        straight_s, _ = _seconds(lambda: [fggb_gradients(spec.module, face[None]) for face in probes], args.repeats)
        print(f"{name}: {count} faces, input {tuple(probes.shape[1:])}; straightforward Jacobian {straight_s / count:.2f} s/face")
        reference = None
        for batch in args.batches:
            seconds, maps = _seconds(lambda: fggb(spec.module, probes, galleries, 0.3, batch_size=batch)["similar"], args.repeats)
            reference = maps if reference is None else reference
            print(f"  {batch:3d} faces per pass: {seconds / count:.2f} s/face, x{straight_s / seconds:.2f}; "
                  f"max |map − first variant's| = {float((maps - reference).abs().max()):.1e}")


if __name__ == "__main__":
    main()
