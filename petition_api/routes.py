"""Every route of the API, in one table: the public app's, and the staff app's (mounted at
``STAFF_PREFIX``). Each handler is documented beside it (``@documented``), and
tests/test_openapi.py checks that every route here is."""

from __future__ import annotations

from aiohttp import web

from petition_api import confirmation, docs, live, partners, petition_page, views, widget
from petition_api.admin import delivery
from petition_api.admin import routes as staff
from petition_api.cors import cross_origin

STAFF_PREFIX = "/v1/admin"

PUBLIC = [
    # Pages for people (HTML): the open petitions, a petition's page, its form, its card.
    web.get("/", petition_page.home),
    web.get("/petitions/{slug}", petition_page.petition_page),
    web.post("/petitions/{slug}", petition_page.sign_from_page),
    web.get("/petitions/{slug}/card.png", petition_page.card),
    web.get("/assets/page-{version:[0-9a-f]{1,64}}.js", petition_page.page_script),
    web.get("/healthz", views.healthz),
    web.get("/readyz", views.readyz),
    # What the widget calls from partners' pages: answered to other origins too.
    *cross_origin(
        [
            web.get("/v1/petitions/{slug}", views.get_petition),
            web.post("/v1/petitions/{slug}/signatures", views.sign),
            web.get("/v1/petitions/{slug}/counts", views.get_counts),
            web.get("/v1/petitions/{slug}/live", live.live),
        ]
    ),
    web.get("/v1/partner/counts", partners.partner_counts),
    web.get("/v1/partner/validations", partners.partner_validations),
    web.get("/confirm", confirmation.new_link_form),
    web.post("/confirm", confirmation.request_new_link),
    web.get("/confirm/{token}", confirmation.show_confirmation),
    web.post("/confirm/{token}", confirmation.confirm),
    web.get("/widget.js", widget.loader),
    web.get("/widget/{version:[0-9a-f]{1,64}}.js", widget.script),
    web.get("/embed/{slug}", widget.embed),
    web.get("/openapi.json", docs.get_openapi),
    web.get("/docs", docs.get_docs),
    web.get("/docs/{asset}", docs.get_docs_asset),
]

STAFF = [
    web.get("/petitions", staff.list_petitions),
    web.post("/petitions", staff.create_petition),
    web.get("/petitions/{slug}", staff.get_petition),
    web.patch("/petitions/{slug}", staff.update_petition),
    web.put("/petitions/{slug}/translations/{lang}", staff.put_translation),
    web.delete("/petitions/{slug}/translations/{lang}", staff.delete_translation),
    web.get("/petitions/{slug}/summary", staff.summary),
    # No HEAD: it would run (and audit) a whole export to send nothing.
    web.get("/petitions/{slug}/signatures.csv", staff.export_signatures, allow_head=False),
    web.get("/petitions/{slug}/delivery", delivery.delivery_page),
    web.get("/petitions/{slug}/ip-hashes", staff.repeated_ip_hashes),
    web.get("/petitions/{slug}/invalidations", staff.list_invalidations),
    web.post("/petitions/{slug}/invalidations", staff.create_invalidation),
    web.delete("/invalidations/{id}", staff.undo_invalidation),
    web.post("/erasures", staff.erase),
]
