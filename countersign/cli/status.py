"""`countersign status`: the workers and senders, their heartbeats, and what waits."""

from __future__ import annotations

import asyncpg
import click

from countersign.cli.common import with_connection
from countersign_core.status import Backlog, Status, read_status


@click.command()
def status() -> None:
    """Show each counter worker and mail sender with its last heartbeat, the counter
    events waiting and the emails due. A process whose heartbeat lapsed is STALE: it died
    or is stuck."""

    async def action(conn: asyncpg.Connection) -> Status:
        return await read_status(conn)

    click.echo(render(with_connection(action)))


def render(status: Status) -> str:
    lines = []
    if status.processes:
        rows = [("KIND", "PROCESS", "STARTED (UTC)", "LAST HEARTBEAT", "STATE")]
        rows += [
            (
                beat.kind,
                beat.process,
                f"{beat.started_at:%Y-%m-%d %H:%M:%S}",
                f"{duration(beat.age)} ago",
                "STALE" if beat.stale else "alive",
            )
            for beat in status.processes
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
    else:
        lines.append("no counter worker or mail sender has written a heartbeat")
    if not any(beat.kind == "counter_worker" and not beat.stale for beat in status.processes):
        lines.append("warning: no counter worker is alive; the counts will not move")
    lines.append(f"counter events waiting: {backlog(status.counter_events)}")
    lines.append(f"emails due: {backlog(status.emails_due)}")
    return "\n".join(lines)


def backlog(waiting: Backlog) -> str:
    if waiting.oldest_age is None:
        return str(waiting.count)
    return f"{waiting.count} (oldest: {duration(waiting.oldest_age)})"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0):.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"
