"""Schema migrations, as ``kongish migrations`` runs them on the configured store.

Each backend's schema is a tuple of versions, each a tuple of statements
(``sqlite.MIGRATIONS``, ``postgres.MIGRATIONS``); a database records the versions it
has and gets the rest, in order. SQLite, one node's own file, is migrated by the node
as it opens it; PostgreSQL, shared by the cluster, only by these commands, under an
advisory lock, so that two hosts migrating at once apply each version once.
"""
from __future__ import annotations

from collections.abc import Iterator

from kongish.settings import Settings


class MigrationError(Exception):
    """A migration command cannot do what it was asked; the message says why."""


def run(settings: Settings, action: str) -> Iterator[str]:
    """Do ``action`` (``bootstrap``, ``up`` or ``list``); yield what to tell the operator."""
    if settings.database == "off":
        raise MigrationError("database = off (DB-less): there is no database to migrate")
    if settings.database == "sqlite":
        yield from _sqlite(settings, action)
    else:
        yield from _postgres(settings, action)


def _sqlite(settings: Settings, action: str) -> Iterator[str]:
    from kongish.db import sqlite

    connection = sqlite.connect_migrated(settings.sqlite_path) if action != "list" else None
    if connection is not None:
        connection.close()
    version = sqlite.schema_version(settings.sqlite_path)
    yield f"{settings.sqlite_path}: schema version {version} of {len(sqlite.MIGRATIONS)}"


def _postgres(settings: Settings, action: str) -> Iterator[str]:
    import psycopg

    from kongish.db import postgres

    try:
        connection = postgres.connect(settings.postgres)
    except psycopg.OperationalError as error:
        raise MigrationError(f"cannot connect to PostgreSQL: {str(error).strip()}") from None
    with connection:
        if action == "list":
            version = postgres.schema_version(connection)
            yield from (f"{'executed' if number <= version else 'pending'}: {number:03d}"
                        for number in range(1, len(postgres.MIGRATIONS) + 1))
            return
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (postgres.MIGRATION_LOCK,))
            if settings.postgres.schema is not None:
                connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{settings.postgres.schema}"')
            connection.execute(f"CREATE TABLE IF NOT EXISTS {postgres.MIGRATIONS_TABLE} (version integer "
                               "PRIMARY KEY, executed_at timestamptz NOT NULL DEFAULT now())")
            version = postgres.schema_version(connection)
            if action == "bootstrap" and version:
                yield "Database already bootstrapped"
            if version > len(postgres.MIGRATIONS):
                raise MigrationError(f"database schema version {version} is newer than the newest this "
                                     f"kongish knows ({len(postgres.MIGRATIONS)})")
            for number in range(version + 1, len(postgres.MIGRATIONS) + 1):
                for statement in postgres.MIGRATIONS[number - 1]:
                    connection.execute(statement)
                connection.execute(f"INSERT INTO {postgres.MIGRATIONS_TABLE} (version) VALUES (%s)",
                                   (number,))
                yield f"migrating {number:03d}: done"
            if version == len(postgres.MIGRATIONS):
                yield "Database is already up-to-date"
            elif action == "bootstrap":
                yield "Database is up-to-date"
