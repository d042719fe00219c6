"""proselflc: find, with Ray Tune, the hyperparameters that make deep networks robust to noisy labels.

`proselflc tune | train | report | configs | init`: the commands parse their arguments and call the library.

Expected failures (bad config, missing files, untrusted checkpoints, a full or read-only disk, no
network) print one paragraph and exit 2; anything else prints a one-line "internal error" and exits 1.
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from proselflc.config import load_run_config
    from proselflc.training import train
    from proselflc.training.run_dir import claim

    cfg = load_run_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    claim(out, resume=args.resume, overwrite=args.overwrite)
    history = train(cfg, run_dir=out, resume=args.resume)
    last = history[-1]
    print(
        f"{cfg.name}: epoch {last['epoch']}  val_accuracy {last['val_accuracy']:.4f}  "
        f"test_accuracy {last['test_accuracy']:.4f}  noisy_fit {last['noisy_fit']:.4f}  -> {out}"
    )
    return 1 if last.get("diverged") else 0


#: What `proselflc --help` shows under the commands: the first steps.
EPILOG = """\
start here:
  proselflc tune quickstart        search and compare methods at 3 noise rates (digits; minutes on a laptop)
  proselflc report results/quickstart
  proselflc configs                the example sweeps and runs that ship with proselflc
  proselflc init quickstart        copy one out to edit, then: proselflc tune quickstart.yaml
"""


def _configs(args: argparse.Namespace) -> int:
    from proselflc import examples

    shown = [examples.describe(name) for name in examples.names()]
    width = max(len(e.name) for e in shown)
    for kind, command in (("sweep", "proselflc tune NAME"), ("run", "proselflc train NAME")):
        print(f"{kind}s ({command}):")
        for e in (e for e in shown if e.kind == kind):
            print(f"  {e.name:<{width}}  {e.summary}")
    print("copy one out to edit: proselflc init NAME [DIR]")
    return 0


def _init(args: argparse.Namespace) -> int:
    from proselflc import examples

    written = examples.copy_out(args.name, args.dir)
    for path in written:
        print(f"wrote {path}")
    command = "tune" if examples.describe(examples.canonical(args.name) or args.name).kind == "sweep" else "train"
    print(f"edit it, then: proselflc {command} {written[0]}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from proselflc.tuning.migrate import migrate

    changes = migrate(args.path, trust_state=args.trust_state)
    for change in changes:
        print(f"{args.path}: {change}")
    if not changes:
        print(f"{args.path}: already in the current form; nothing rewritten")
    return 0


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("proselflc")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from proselflc.analysis import cli as analysis_cli
    from proselflc.tuning import cli as tuning_cli

    parser = argparse.ArgumentParser(
        prog="proselflc", description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"proselflc {_version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one config in-process (no Ray)")
    train.add_argument("config", help="run YAML, or the name of a shipped one, e.g. digits")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set loss.name=proselflc --set noise.rate=0.4")
    train.add_argument("--out", help="run directory (default: runs/<name>)")
    train.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if present")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run already in <out> (its metrics, checkpoint and TensorBoard files)")
    train.set_defaults(func=_train)

    tune = sub.add_parser("tune", help="run a Ray Tune sweep across noise rates and methods")
    tuning_cli.add_arguments(tune)
    tune.set_defaults(func=tuning_cli.run)

    report = sub.add_parser("report", help="tables, plots and exports of a finished sweep")
    analysis_cli.add_arguments(report)
    report.set_defaults(func=analysis_cli.run)

    configs = sub.add_parser("configs", help="list the example sweeps and runs that ship with proselflc")
    configs.set_defaults(func=_configs)

    init = sub.add_parser("init", help="copy a shipped config (and its base run file) out to edit")
    init.add_argument("name", help="a name from `proselflc configs`, e.g. quickstart or paper/<name>")
    init.add_argument("dir", nargs="?", default=".", help="where to write it (default: here)")
    init.set_defaults(func=_init)

    migrate = sub.add_parser("migrate", help="rewrite, once, a sweep or run config (file or directory) of an earlier form")
    migrate.add_argument("path", help="a sweep YAML or sweep directory (its sweep.yaml, its saved Ray state), a run YAML or run directory (its config.yaml)")
    migrate.add_argument(
        "--trust-state", action="store_true",
        help="rewrite a sweep directory's saved Ray state without verifying its signatures (only for a directory you trust: it is unpickled)",
    )
    migrate.set_defaults(func=_migrate)
    return parser


#: Where each command writes, named in disk-error paragraphs so the user knows what to change.
WRITES_TO = {
    "train": "--out (default runs/<name>)",
    "tune": "the sweep's storage_path",
    "report": "--out (default SWEEP_DIR/report; ./<sweep>-report for a sweep at a URI)",
}


def _output_location(args: argparse.Namespace) -> str | None:
    """Where the command was writing, for a disk error that does not name its file."""
    if getattr(args, "out", None):
        return str(args.out)
    if args.command == "report":
        from proselflc import storage  # deferred: pyarrow only for a failed report

        if storage.is_uri(args.sweep_dir):
            return f"{storage.uri_name(args.sweep_dir)}-report"
        return str(Path(args.sweep_dir) / "report")
    return None


def _explain_os_error(exc: OSError, command: str, location: str | None) -> str | None:
    """One paragraph for the disk and network failures a user can fix, or None for anything else."""
    from urllib.error import URLError

    if isinstance(exc, URLError):
        return (
            f"could not download ({exc.reason}): this machine seems to have no network. Put the files in "
            "place by hand and set data.download: false"
        )
    named = exc.filename if exc.filename is not None else location
    path = repr(str(named)) if named is not None else "the output location"
    where = WRITES_TO.get(command, "the output location")
    again = " with --resume" if command in ("train", "tune") else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device holding {path}. Free some space, then rerun{again}; what was written so far is kept"
    if exc.errno == errno.EROFS:
        return f"{path} is on a read-only filesystem. Choose a writable location for {where}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied for {path}. Choose a location you can write to for {where}, or fix its permissions"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{path} cannot be created: a file is in the way of a directory. Point {where} at a directory"
    if exc.errno == errno.EISDIR:
        return f"{path} is a directory where a file was expected"
    if exc.errno == errno.ENOENT:
        return f"{path} does not exist"
    return None


def explain(exc: BaseException, command: str, location: str | None = None) -> str | None:
    """The paragraph for an anticipated failure (its cause chain included), None for an internal error."""
    if isinstance(exc, ValueError):
        return str(exc)
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError):
            text = _explain_os_error(link, command, location)
            if text is not None:
                return text
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
    return None


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the exception's cause chain."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an anticipated failure is one paragraph (exit 2), anything else a one-line internal error (exit 1)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"proselflc {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if _interrupted(exc):  # a second Ctrl+C that landed inside a library, which wrapped it
            print(f"proselflc {args.command}: interrupted", file=sys.stderr)
            return 130
        text = explain(exc, args.command, _output_location(args))
        if text is not None:
            from proselflc.errors import clip

            print(f"proselflc {args.command}: error: {clip(text, 8000)}", file=sys.stderr)
            return 2
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        print(
            f"proselflc {args.command}: internal error ({type(exc).__name__}: {detail}); "
            f"rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
