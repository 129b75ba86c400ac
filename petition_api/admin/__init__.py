"""The staff API, a sub-application at ``/v1/admin``: every path under it, unknown ones
included, needs a staff token (``auth.staff_middleware``)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from countersign_domain.staff import Role
from petition_api.admin import routes
from petition_api.admin.auth import ROUTE_ROLES, staff_middleware
from petition_api.admin.delivery import delivery_page, setup_templates

PREFIX = "/v1/admin"

# Routes an exporter may use as well as an admin: reads without emails. Any other route
# needs the admin role.
EXPORTER_HANDLERS: tuple[Callable[..., object], ...] = (
    routes.list_petitions,
    routes.get_petition,
    routes.summary,
    routes.export_signatures,
    delivery_page,
)


def create_admin_app() -> web.Application:
    admin = web.Application(middlewares=[staff_middleware])
    admin[ROUTE_ROLES] = dict.fromkeys(EXPORTER_HANDLERS, Role.EXPORTER)
    setup_templates(admin)
    router = admin.router
    router.add_get("/petitions", routes.list_petitions)
    router.add_post("/petitions", routes.create_petition)
    router.add_get("/petitions/{slug}", routes.get_petition)
    router.add_patch("/petitions/{slug}", routes.update_petition)
    router.add_get("/petitions/{slug}/summary", routes.summary)
    # No HEAD: it would run (and audit) a whole export to send nothing.
    router.add_get("/petitions/{slug}/signatures.csv", routes.export_signatures, allow_head=False)
    router.add_get("/petitions/{slug}/delivery", delivery_page)
    router.add_get("/petitions/{slug}/ip-hashes", routes.repeated_ip_hashes)
    router.add_get("/petitions/{slug}/invalidations", routes.list_invalidations)
    router.add_post("/petitions/{slug}/invalidations", routes.create_invalidation)
    router.add_delete("/invalidations/{id}", routes.undo_invalidation)
    router.add_post("/erasures", routes.erase)
    return admin


def add_routes(app: web.Application) -> None:
    app.add_subapp(PREFIX, create_admin_app())
