"""What every script shares on the command line: user errors are one clear line and exit 1."""
import argparse
import sys


def fail(msg):
    """A user error: one line on stderr, non-zero exit, no traceback."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the script's docstring as help, and a bad flag reported in one line."""

    def __init__(self, doc, **kw):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    def error(self, message):
        fail(f"{message} (see {self.prog} --help)")
