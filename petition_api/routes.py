"""Every route of the API, in one table: the public app's, the staff app's (mounted at
``STAFF_PREFIX``) and the staff console's (``CONSOLE_PREFIX``, pages for people). Each API
handler is documented beside it (``@documented``), and tests/test_openapi.py checks that
every route here but the console's is."""

from __future__ import annotations

from aiohttp import web

from petition_api import (
    confirmation,
    docs,
    live,
    partners,
    petition_page,
    signature_log,
    views,
    widget,
)
from petition_api.admin import delivery
from petition_api.admin import routes as staff
from petition_api.console import exports as console_exports
from petition_api.console import moderation as console_moderation
from petition_api.console import people as console_people
from petition_api.console import petitions as console_petitions
from petition_api.console import signing_in
from petition_api.console import translations as console_translations
from petition_api.cors import cross_origin

STAFF_PREFIX = "/v1/admin"
CONSOLE_PREFIX = "/admin"

PUBLIC = [
    # Pages for people (HTML): the open petitions, a petition's page, its form, its card.
    web.get("/", petition_page.home),
    web.get("/petitions/{slug}", petition_page.petition_page),
    web.post("/petitions/{slug}", petition_page.sign_from_page),
    web.get("/petitions/{slug}/card.png", petition_page.card),
    web.get("/assets/page-{version:[0-9a-f]{1,64}}.js", petition_page.page_script),
    web.get("/healthz", views.healthz),
    web.get("/readyz", views.readyz),
    # What the widget calls from partners' pages: answered to other origins too. The
    # busiest first: aiohttp tries a path's routes in this order.
    *cross_origin(
        [
            web.get("/v1/petitions/{slug}/counts", views.get_counts),
            web.post("/v1/petitions/{slug}/signatures", views.sign),
            web.get("/v1/petitions/{slug}", views.get_petition),
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
    # The signature log (README, "A count anyone can verify").
    web.get("/v1/log/public-key", signature_log.public_key),
    web.get("/v1/petitions/{slug}/log/head", signature_log.head),
    web.get("/v1/petitions/{slug}/log/heads", signature_log.heads),
    web.get("/v1/petitions/{slug}/log/leaves", signature_log.leaves),
    web.get("/v1/petitions/{slug}/log/consistency", signature_log.consistency),
    web.get("/v1/petitions/{slug}/log/inclusion", signature_log.inclusion),
    web.get("/v1/petitions/{slug}/log/summary", signature_log.summary),
    web.get("/v1/receipts/{code}", signature_log.check_receipt),
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
    web.get("/petitions/{slug}/partners", staff.list_partner_grants),
    web.put("/petitions/{slug}/partners/{source}", staff.grant_partner),
    web.delete("/petitions/{slug}/partners/{source}", staff.revoke_partner_grant),
    web.get("/petitions/{slug}/invalidations", staff.list_invalidations),
    web.post("/petitions/{slug}/invalidations", staff.create_invalidation),
    web.delete("/invalidations/{id}", staff.undo_invalidation),
    web.post("/erasures", staff.erase),
]

# Who may open each page is declared on its handler (petition_api/console/pages.py).
CONSOLE = [
    web.get("/", console_petitions.petition_list),
    web.get("/sign-in", signing_in.sign_in_page),
    web.post("/sign-in/link", signing_in.request_link),
    web.post("/sign-in/token", signing_in.use_token),
    web.get("/sign-in/{secret}", signing_in.link_page),
    web.post("/sign-in/{secret}", signing_in.use_link),
    web.post("/sign-out", signing_in.sign_out_now),
    web.post("/language", signing_in.choose_language),
    web.get("/static/{name}", signing_in.static_file),
    web.get("/petitions/new", console_petitions.new_petition),
    web.post("/petitions", console_petitions.create_petition),
    web.get("/petitions/{slug}", console_petitions.petition_dashboard),
    web.get("/petitions/{slug}/figures", console_petitions.petition_figures),
    web.get("/petitions/{slug}/edit", console_petitions.edit_petition),
    web.post("/petitions/{slug}/edit", console_petitions.update_petition),
    web.post("/petitions/{slug}/status", console_petitions.change_status),
    web.get("/petitions/{slug}/languages", console_translations.languages_page),
    web.post("/petitions/{slug}/languages", console_translations.save_language),
    web.post("/petitions/{slug}/languages/{lang}", console_translations.language_action),
    web.get("/petitions/{slug}/export", console_exports.export_page),
    web.get("/petitions/{slug}/signatures.csv", console_exports.download, allow_head=False),
    web.get("/petitions/{slug}/delivery", console_exports.delivery_page),
    web.get("/petitions/{slug}/delivery.pdf", console_exports.delivery_pdf, allow_head=False),
    web.get("/petitions/{slug}/suspects", console_moderation.suspects_page),
    web.post("/petitions/{slug}/suspects", console_moderation.review_suspects),
    web.get("/petitions/{slug}/invalidations", console_moderation.invalidations_page),
    web.post("/petitions/{slug}/invalidations", console_moderation.invalidate),
    web.post(
        "/petitions/{slug}/invalidations/{id:[0-9]{1,18}}/undo",
        console_moderation.undo_invalidation,
    ),
    web.get("/erasure", console_moderation.erasure_page),
    web.post("/erasure", console_moderation.erase),
    web.get("/audit", console_moderation.audit_page),
    web.get("/partners", console_people.partners_page),
    web.post("/partners", console_people.create_partner),
    web.post("/partners/{code}/revoke", console_people.revoke_partner),
    web.post("/partners/{code}/grants", console_people.grant),
    web.post("/petitions/{slug}/grants", console_people.grant),
    web.post("/petitions/{slug}/grants/{code}/revoke", console_people.revoke_grant),
    web.get("/staff", console_people.staff_page),
    web.post("/staff", console_people.invite),
    web.post("/staff/{id:[0-9]{1,18}}/remove", console_people.remove),
]
