"""``python -m fame_utils.protocols run|report``: the paper's protocols, sharded over torchrun ranks, resumable.

One process::

    python -m fame_utils.protocols run --protocol shipped_objects --network efficientnet_lite0 --out runs/objects
    python -m fame_utils.protocols report --out runs/objects

Several (each rank takes every N-th chunk of items)::

    torchrun --nproc_per_node=2 -m fame_utils.protocols run --protocol shipped_objects --network efficientnet_lite0 --out runs/objects

Only parses the command line, turns user errors into one line and SIGTERM/SIGINT into a clean exit.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from fame_utils.data import ImageLoadError
from fame_utils.protocols.catalogue import PROTOCOLS, DataOptions
from fame_utils.protocols.errors import IncompleteStoreError, ProtocolInputError, StoreMismatchError
from fame_utils.protocols.lock import RunLockedError
from fame_utils.protocols.report import report
from fame_utils.protocols.runner import RunOptions, run_protocol

#: Problems the user fixes; an unreadable image is met mid-run (items stored before it are kept).
_USER_ERRORS = (ProtocolInputError, StoreMismatchError, RunLockedError, IncompleteStoreError, ImageLoadError)
#: Exit status for bad input or a refused folder (argparse uses 2 for bad flags too).
EXIT_USER_ERROR = 2


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT reached the process: unwind (releasing the lock) and exit."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise RunInterrupted(signum)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fame_utils.protocols", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="compute (or resume) a protocol's maps and metric inputs into --out")
    run.add_argument("--protocol", required=True, choices=list(PROTOCOLS), help="; ".join(f"{k}: {v.description}" for k, v in PROTOCOLS.items()))
    run.add_argument("--network", required=True, help="a fame_utils.models name, e.g. efficientnet_lite0, resnet50, sface, iresnet101")
    run.add_argument("--weights", default="shipped", help="'shipped' (default), 'hub' (torchvision nets), a checkpoint path, or 'random'")
    run.add_argument("--trust-checkpoint", action="store_true", help="allow unpickling a checkpoint that holds more than tensors (trusted files only)")
    run.add_argument("--methods", nargs="+", default=[], help="method names (quote names with spaces); default: the paper's table")
    run.add_argument("--out", required=True, type=Path, help="run folder; rerunning with the same arguments resumes it")
    run.add_argument("--iterations", type=int, default=500, help="FAME iterations T (default 500, the paper's)")
    run.add_argument("--batch-size", type=int, default=1, help="items explained together (default 1)")
    run.add_argument("--n-masks", type=int, default=500, help="CorrRISE masks (verification; default 500)")
    run.add_argument("--seed", type=int, default=0, help="seed of random maps, CorrRISE masks and the ImageNet draw")
    run.add_argument("--subset", type=int, default=None, help="only this many evenly spaced items per split (a trial run)")
    run.add_argument("--data-root", type=Path, default=None, help="ImageNet LOC folder, or a face folder with protocols/ and images/")
    run.add_argument("--protocol-csv", type=Path, default=None, help="imagenet_loc: protocol CSV (ImageId,PredictionString,target)")
    run.add_argument("--per-class", type=int, default=5, help="imagenet_loc without --protocol-csv: rows drawn per class (default 5)")
    run.add_argument("--protocols-dir", type=Path, default=None, help="face protocols: folder of <Dataset>/<protocol>.csv")
    run.add_argument("--images-dir", type=Path, default=None, help="face protocols: images or HDF5 crops")
    run.add_argument("--device", default="auto", help="auto (CUDA GPU LOCAL_RANK, MPS, CPU), cpu, cuda or mps")
    run.add_argument("--threads", type=int, default=None, help="CPU threads per rank (default: the node's cores / its ranks)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar per rank (TQDM_DISABLE=1 in the environment also silences the methods' own bars)")
    merge = commands.add_parser("report", help="merge run folders into Table 1 or Table 2 with bootstrap intervals")
    merge.add_argument("--out", required=True, nargs="+", type=Path, help="run folder(s) of one task (e.g. one per network)")
    merge.add_argument("--tables", type=Path, default=None, help="where the tables go (default: the run folder; required for several)")
    merge.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    return parser


def _run(args: argparse.Namespace) -> int:
    data = DataOptions(data_root=args.data_root, protocol_csv=args.protocol_csv, per_class=args.per_class, seed=args.seed,
                       protocols_dir=args.protocols_dir, images_dir=args.images_dir)
    options = RunOptions(protocol=args.protocol, network=args.network, out=args.out, methods=tuple(args.methods),
                         weights=None if args.weights == "random" else args.weights,
                         trust_checkpoint=args.trust_checkpoint, iterations=args.iterations, batch_size=args.batch_size,
                         n_masks=args.n_masks, seed=args.seed, subset=args.subset, data=data, device=args.device, threads=args.threads,
                         progress=not args.no_progress)
    summary = run_protocol(options)
    return 0 if summary.complete else 1


def _report(args: argparse.Namespace) -> int:
    if args.tables is None and len(args.out) > 1:
        raise ProtocolInputError("several run folders given: say where the merged tables go with --tables DIR.")
    result = report(args.out, args.tables or args.out[0], n_boot=args.n_boot)
    print(result.table.to_markdown(index=False))
    print("\n".join(f"wrote {path}" for path in result.files), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it; user errors print one line and return :data:`EXIT_USER_ERROR`."""
    args = _parser().parse_args(argv)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(args) if args.command == "run" else _report(args)
    except _USER_ERRORS as error:
        print(f"fame_utils.protocols {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RunInterrupted as interrupted:
        print(f"fame_utils.protocols {args.command}: interrupted by signal {interrupted.args[0]}; items stored so far are kept, "
              "rerun the same command to resume.", file=sys.stderr)
        return 128 + int(interrupted.args[0])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
