"""``python -m aiolite``: the command line (grows with the CLI issue)."""

from __future__ import annotations

import sys

from ._version import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["--version"], ["-V"]):
        print(f"aiolite {__version__}")
        return 0
    print(f"aiolite: unknown arguments {args!r}; only --version exists so far", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
