"""The staff API, a sub-application at ``/v1/admin``: every path under it, unknown ones
included, needs a staff token (``auth.staff_middleware``)."""

from __future__ import annotations

from aiohttp import web

from petition_api.admin import routes
from petition_api.admin.auth import ROUTE_ROLES, staff_middleware
from petition_api.admin.delivery import delivery_page, setup_templates

PREFIX = "/v1/admin"


def create_admin_app() -> web.Application:
    admin = web.Application(middlewares=[staff_middleware])
    # Each handler's role as its staff_operation declares it; a handler without one
    # needs the admin role.
    admin[ROUTE_ROLES] = dict(routes.REQUIRED_ROLES)
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
