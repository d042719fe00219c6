"""`proselflc train | tune | report`: thin argument parsing over the library.

Expected failures (bad config, missing files, untrusted checkpoints) print one paragraph and exit 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from proselflc.config import load_run_config
    from proselflc.training import train

    cfg = load_run_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    history = train(cfg, run_dir=out, resume=args.resume)
    last = history[-1]
    print(
        f"{cfg.name}: epoch {last['epoch']}  val_accuracy {last['val_accuracy']:.4f}  "
        f"test_accuracy {last['test_accuracy']:.4f}  noisy_fit {last['noisy_fit']:.4f}  -> {out}"
    )
    return 1 if last.get("diverged") else 0


def build_parser() -> argparse.ArgumentParser:
    from proselflc.analysis import cli as analysis_cli
    from proselflc.tuning import cli as tuning_cli

    parser = argparse.ArgumentParser(prog="proselflc", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one config in-process (no Ray)")
    train.add_argument("config", help="run YAML, e.g. configs/digits.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set loss.name=proselflc --set noise.rate=0.4")
    train.add_argument("--out", help="run directory (default: runs/<name>)")
    train.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if present")
    train.set_defaults(func=_train)

    tune = sub.add_parser("tune", help="run a Ray Tune sweep across noise rates and methods")
    tuning_cli.add_arguments(tune)
    tune.set_defaults(func=tuning_cli.run)

    report = sub.add_parser("report", help="tables, plots and exports of a finished sweep")
    analysis_cli.add_arguments(report)
    report.set_defaults(func=analysis_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"proselflc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"proselflc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
