"""The `taureau` command: dispatches to the sub-commands."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import signal

    from taureau.cli.app import run

    # `taureau ... | head` must end quietly when head stops reading, as Unix tools do.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    try:
        return run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        # Ctrl-C in a verb that does not handle it itself: one line, not a traceback, and the
        # exit status shells give a command ended by SIGINT.
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
