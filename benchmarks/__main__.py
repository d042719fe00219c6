"""Dispatcher: `python -m benchmarks <name> [args]`; `all` runs every registered benchmark with those args."""

from __future__ import annotations

import importlib
import sys

from benchmarks import BENCHMARKS


def main(argv: list[str]) -> int:
    names = sorted(BENCHMARKS)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m benchmarks {{{','.join([*names, 'all'])}}} [--quick] [benchmark options]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        failed = [n for n in names if importlib.import_module(BENCHMARKS[n]).main(rest) != 0]
        if failed:
            print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    if name not in BENCHMARKS:
        from proselflc.errors import closest

        print(f"unknown benchmark {name!r}; {closest(name, [*names, 'all'])}", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHMARKS[name]).main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
