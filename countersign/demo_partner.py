"""The demo partner page of ``countersign dev``: another origin embedding the widget.

``python -m countersign.demo_partner API_URL FD SLUG`` serves, on the listening socket it
inherits as descriptor FD (``countersign dev`` binds the port), so on another origin than
the API, a page that pastes the widget snippet as a partner would, and shows it.
"""

from __future__ import annotations

import socket
import sys

from aiohttp import web

from petition_api.widget_assets import partner_page

DEMO_SOURCE = "demo-partner"


def demo_app(api: str, slug: str) -> web.Application:
    page = partner_page(api, [(slug, DEMO_SOURCE)])

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    api, fd, slug = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    web.run_app(demo_app(api, slug), sock=socket.socket(fileno=fd), print=None, access_log=None)


if __name__ == "__main__":
    main()
