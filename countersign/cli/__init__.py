"""The ``countersign`` command: the top layer, a door onto the services and the domain.

Each subcommand lives in a module of this package; this one only assembles them.
"""

from __future__ import annotations

import click

from countersign.cli import (
    figures,
    mail,
    partners,
    petitions,
    servers,
    staff,
    status,
    suspects,
)
from countersign.cli.verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """countersign: petition signatures in Postgres, exact live counts in Redis.

    Settings come from environment variables (see the README); with DATABASE_URL and
    REDIS_URL unset, commands use embedded servers under COUNTERSIGN_DATA_DIR.
    """


for command in (
    servers.dev,
    servers.api,
    servers.worker,
    servers.migrate,
    servers.rebuild,
    status.status,
    petitions.petition,
    staff.token,
    staff.staff,
    staff.audit,
    staff.export,
    figures.summary,
    figures.delivery,
    staff.anonymise,
    mail.mailer,
    mail.purge_pending,
    partners.partner,
    suspects.suspects,
    verify,
):
    main.add_command(command)
