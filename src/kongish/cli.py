"""``kongish``: the operator's commands that are not the gateway itself (``twist kongish``).

``kongish migrations bootstrap | up | list [-c kong.conf]``, as Kong's ``kong migrations``:
they read the same kong.conf and ``KONGISH_*`` variables as the gateway, and prepare
the database it names. Safe to run from several hosts at once: on PostgreSQL they take
an advisory lock, and a second run finds the work done.
"""
from __future__ import annotations

import argparse
import sys

from kongish.settings import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kongish", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    migrations = commands.add_parser("migrations", help="prepare the database (Kong's 'kong migrations')")
    migrations.add_argument("action", choices=("bootstrap", "up", "list"))
    migrations.add_argument("-c", "--conf", help="kong.conf-style configuration file")
    arguments = parser.parse_args(argv)
    try:
        settings = Settings.load(arguments.conf)
    except ConfigError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    from kongish.db.migrations import MigrationError, run

    try:
        for line in run(settings, arguments.action):
            print(line)
    except MigrationError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
