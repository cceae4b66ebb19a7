"""``python -m fastgp info``: versions and, per device, which backends run and why others do not."""

import argparse

from . import backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastgp", description=__doc__)
    parser.add_argument("command", choices=["info"], help="info: print versions and backend availability")
    parser.parse_args(argv)
    backend.info()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
