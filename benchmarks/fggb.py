"""FGGB: all D Jacobian rows as one batched vector-Jacobian product vs D sequential backward passes.

Runs on the shipped face networks (SFace, dlib ResNet) with one aligned probe crop and prints the
seconds of each variant (all D rows in one product, chunks of ``--chunk`` rows — the library default —
and D backward passes) and the ratio sequential / batched (> 1 means batching is faster). Timings
are machine-specific; nothing is asserted here (the equality of the two is a unit test).

Usage: ``python benchmarks/fggb.py [--networks sface dlib_resnet] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import time

import torch

from fame_utils.baselines.gradient import fggb_gradients
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
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs per variant")
    parser.add_argument("--chunk", type=int, default=32, help="rows per batched product for the chunked variant")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for name in args.networks:
        spec = load_model(name, device="cpu")
        image = spec.preprocess(face_pairs(size=spec.input_size)[0].probe)
        batched_s, batched = _seconds(lambda: fggb_gradients(spec.module, image, chunk_size=None), args.repeats)
        chunked_s, _ = _seconds(lambda: fggb_gradients(spec.module, image, chunk_size=args.chunk), args.repeats)
        sequential_s, sequential = _seconds(lambda: fggb_gradients(spec.module, image, batched=False), args.repeats)
        difference = float((batched - sequential).abs().max())
        print(
            f"{name}: D = {batched.shape[0]}, input {tuple(image.shape)}; batched {batched_s:.2f} s, "
            f"chunked ({args.chunk} rows) {chunked_s:.2f} s, sequential {sequential_s:.2f} s; "
            f"ratio sequential/batched = {sequential_s / batched_s:.2f}, sequential/chunked = {sequential_s / chunked_s:.2f}; "
            f"max |difference| = {difference:.1e}"
        )


if __name__ == "__main__":
    main()
