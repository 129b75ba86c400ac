"""Live counts over Server-Sent Events: ``GET /v1/petitions/{slug}/live``.

The streams are fed by the process's one ``LiveHub`` (petition_api/live_hub.py); this is
the HTTP side: the petition, the event stream, and the hang-up.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp import web
from aiohttp_sse import sse_response

from countersign_domain.errors import PetitionNotFound, ServiceUnavailable
from petition_api import appkeys as keys
from petition_api.openapi import SLUG, Reply, documented
from petition_api.petitions import public_petition

# Reconnection delay hinted to browsers, spread so that the streams of a restarted
# process do not all come back in the same instant.
RETRY_MS = (2000, 6000)


# Each event of the stream (the `retry:` hint and keep-alive comments are no events).
EVENT = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string", "enum": ["message"]},
        "data": {"type": "string", "description": "The counts, as JSON."},
    },
}


@documented(
    "A petition's live counts, as Server-Sent Events",
    tags=("petitions",),
    description=(
        "A stream that stays open: a `retry:` hint, then one event (`id:` and `data:` "
        "holding the counts as `GET .../counts` gives them) after every change, and "
        "comment lines to keep it alive."
    ),
    path_parameters={"slug": SLUG},
    header_parameters={"Last-Event-ID": "The id of the last event received (on reconnecting)."},
    responses={200: Reply("The event stream.", media_schemas={"text/event-stream": EVENT})},
    problems=(PetitionNotFound, ServiceUnavailable),
)
async def live(request: web.Request) -> web.StreamResponse:
    petition = await public_petition(request)
    heartbeat = request.app[keys.SETTINGS].api.live_heartbeat
    with request.app[keys.LIVE].watch(petition) as stream:
        async with sse_response(request, ping_interval=heartbeat) as sse:
            await sse.write(f"retry: {random.randint(*RETRY_MS)}\n\n".encode())
            # The ping task ends when the browser hangs up; end the loop with it.
            hung_up = asyncio.create_task(sse.wait())
            hung_up.add_done_callback(lambda _: stream.close())
            sent = sse.last_event_id
            try:
                while (event := await stream.next()) is not None:
                    if event.id != sent:
                        await sse.write(event.wire)
                        sent = event.id
            except (ConnectionResetError, TimeoutError):
                pass  # the browser went away; it reconnects if it wants more
            finally:
                hung_up.cancel()
    return sse
