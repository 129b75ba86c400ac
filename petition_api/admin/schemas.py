"""Shapes of the staff API (marshmallow). Unknown fields are rejected everywhere: a
mistyped filter must fail loudly, not export or invalidate more than was meant."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from countersign_domain import patterns
from countersign_domain.petitions import NEW_STATUSES, STATUSES
from petition_api.schemas import JsonBoolean, PetitionSchema, WholeMatch, storable_text, valid_slug

# As the sign endpoint accepts them. Patterns match the whole value, as the OpenAPI
# document (which apispec writes from them) says.
SOURCE = WholeMatch(patterns.SOURCE_CODE, error="Use 1-64 of a-z, 0-9, '_' and '-'.")
ORIGIN = WholeMatch(
    r"^(\*|https?://[a-z0-9.-]+(:[0-9]{1,5})?)$",
    error="Use '*' or an origin such as https://example.org (lowercase, no path).",
)
# An ISO 3166-1 alpha-2 code, in any case, with nothing around it.
COUNTRY = WholeMatch(
    patterns.COUNTRY.replace(f"^{patterns.WS}*", "^").replace(f"{patterns.WS}*$", "$"),
    error="Not an ISO 3166-1 alpha-2 country code.",
)
POSTGRES_INTEGER = validate.Range(min=1, max=2**31 - 1)


def _datetime(**kwargs: Any) -> fields.AwareDateTime:
    """An ISO 8601 date or date-time; without a zone it is read as UTC."""
    return fields.AwareDateTime(default_timezone=UTC, **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


PETITION_LANGUAGE = WholeMatch(patterns.PETITION_LANGUAGE, error=patterns.PETITION_LANGUAGE_RULE)


class _PetitionText(StrictSchema):
    title = fields.String(validate=[storable_text, validate.Length(1, 300)])
    text = fields.String(attribute="body", validate=[storable_text, validate.Length(max=100_000)])
    target = fields.String(validate=[storable_text, validate.Length(max=300)])


class TranslationSchema(_PetitionText):
    """A petition's title, text and target in one language (PUT replaces all three)."""

    title = fields.String(required=True, validate=[storable_text, validate.Length(1, 300)])
    text = fields.String(
        attribute="body",
        load_default="",
        validate=[storable_text, validate.Length(max=100_000)],
    )
    target = fields.String(load_default="", validate=[storable_text, validate.Length(max=300)])


class _PetitionFields(_PetitionText):
    goal = fields.Integer(strict=True, validate=POSTGRES_INTEGER)
    next_goal = fields.Integer(
        strict=True,
        allow_none=True,
        validate=POSTGRES_INTEGER,
        metadata={
            "description": "Above the goal: shown as the goal once the total reaches it; "
            "null: none."
        },
    )
    default_lang = fields.String(
        validate=PETITION_LANGUAGE,
        metadata={
            "description": "The language of title, text and target. Making another language "
            "the default swaps its translation (if any) with the row's text."
        },
    )
    allowed_origins = fields.List(fields.String(validate=ORIGIN), validate=validate.Length(max=50))
    # In the future (else 409 closes_at_passed: a rule of the time of the request).
    closes_at = _datetime(allow_none=True)
    # Count a signature only once its address is confirmed by email (double opt-in).
    require_confirmation: fields.Boolean = JsonBoolean()
    # The privacy notice, when not the deployment's; null clears it.
    data_controller = fields.String(
        allow_none=True, validate=[storable_text, validate.Length(1, 200)]
    )
    privacy_policy_url = fields.String(
        allow_none=True,
        validate=[
            WholeMatch(patterns.POLICY_URL, error=patterns.POLICY_URL_RULE),
            validate.Length(max=2000),
        ],
    )


class PetitionCreateSchema(_PetitionFields):
    slug = fields.String(required=True, validate=valid_slug)
    title = fields.String(required=True, validate=[storable_text, validate.Length(1, 300)])
    status = fields.String(load_default="draft", validate=validate.OneOf(NEW_STATUSES))


class PetitionUpdateSchema(_PetitionFields):
    status = fields.String(validate=validate.OneOf(STATUSES))


class TranslationOutSchema(Schema):
    title = fields.String(required=True)
    text = fields.String(attribute="body", required=True)
    target = fields.String(required=True)


class ManagedPetitionSchema(PetitionSchema):
    id = fields.Integer()
    next_goal = fields.Integer(allow_none=True)
    allowed_origins = fields.List(fields.String())
    closed_at = fields.AwareDateTime(allow_none=True)
    require_confirmation = fields.Boolean()
    data_controller = fields.String(allow_none=True)
    privacy_policy_url = fields.String(allow_none=True)
    translations = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(TranslationOutSchema),
        metadata={"description": "The texts in languages other than the default, by language."},
    )


class _SignedBetween(StrictSchema):
    # A window with signed_before at or before signed_after holds no signature: it
    # selects nothing, like any filter nothing matches.
    signed_after = _datetime()  # inclusive
    signed_before = _datetime()  # exclusive


class ExportQuerySchema(_SignedBetween):
    country = fields.String(validate=COUNTRY)
    source = fields.String(validate=SOURCE)
    include = fields.String(validate=validate.OneOf(["email"]))
    # yes: only those who agreed to hear from the campaign (consent_updates); no: the others.
    consent = fields.String(validate=validate.OneOf(["yes", "no"]))

    @post_load
    def _normalise(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "country" in data:
            data["country"] = data["country"].upper()
        if "consent" in data:
            data["consent"] = data["consent"] == "yes"
        return data


class RepeatedIpQuerySchema(StrictSchema):
    min_signatures = fields.Integer(load_default=2, validate=validate.Range(min=2, max=2**31 - 1))


class ErasureSchema(StrictSchema):
    # As the sign endpoint accepts addresses (so any address that signed can be erased).
    # Addresses pasted from a request email often carry spaces around them: the pattern
    # allows them, and they are stripped.
    email = fields.String(
        required=True,
        validate=validate.Regexp(patterns.EMAIL, error="Not a valid email address."),
        metadata={"description": "An email address, up to 254 characters."},
    )

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            return {**data, "email": data["email"].strip()}
        return data


class InvalidationSchema(_SignedBetween):
    CRITERIA = ("source", "ip_hash", "email_domain", "signed_after", "signed_before")

    source = fields.String(validate=SOURCE)
    # The keyed hash as the ip-hashes endpoint lists it: 64 hex digits.
    ip_hash = fields.String(validate=WholeMatch(r"^[0-9a-fA-F]{64}$"))
    email_domain = fields.String(
        validate=WholeMatch(
            r"^@?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", error="Not a domain such as example.org."
        )
    )
    reason = fields.String(validate=[storable_text, validate.Length(1, 500)])
    dry_run: fields.Boolean = JsonBoolean(load_default=False)

    @validates_schema
    def _complete(self, data: dict[str, Any], **_: Any) -> None:
        if not any(data.get(name) is not None for name in self.CRITERIA):
            raise ValidationError(f"Give at least one of: {', '.join(self.CRITERIA)}.")
        if not data["dry_run"] and not data.get("reason"):
            raise ValidationError("Say why (required unless dry_run).", "reason")

    @post_load
    def _normalise(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "ip_hash" in data:
            data["ip_hash"] = bytes.fromhex(data["ip_hash"])
        if "email_domain" in data:
            data["email_domain"] = data["email_domain"].lstrip("@").lower()
        return data


class InvalidationOutSchema(Schema):
    id = fields.Integer()
    petition = fields.String(attribute="slug")
    criteria = fields.Dict(keys=fields.String(), values=fields.String())
    reason = fields.String()
    created_by = fields.String()
    created_at = fields.AwareDateTime()
    invalidated = fields.Integer(attribute="row_count")
    undone_at = fields.AwareDateTime(allow_none=True)
    undone_by = fields.String(allow_none=True)


# -- answers ---------------------------------------------------------------------------------


class ManagedPetitionListSchema(Schema):
    petitions = fields.List(fields.Nested(ManagedPetitionSchema), required=True)


class SummaryCountrySchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    count = fields.Integer(required=True)


class SummarySourceSchema(Schema):
    source = fields.String(required=True, allow_none=True)
    count = fields.Integer(required=True)


class SummaryDaySchema(Schema):
    date = fields.Date(required=True)
    count = fields.Integer(required=True)


class SummarySchema(Schema):
    petition = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.String(required=True)
    goal = fields.Integer(required=True)
    total = fields.Integer(required=True)
    countries = fields.List(fields.Nested(SummaryCountrySchema), required=True)
    sources = fields.List(fields.Nested(SummarySourceSchema), required=True)
    days = fields.List(fields.Nested(SummaryDaySchema), required=True)
    invalidated = fields.Integer(required=True)
    erased = fields.Integer(required=True)
    consent_updates = fields.Integer(
        required=True,
        metadata={"description": "Counted signers who agreed to hear from the campaign."},
    )
    first_signed_at = fields.AwareDateTime(required=True, allow_none=True)
    last_signed_at = fields.AwareDateTime(required=True, allow_none=True)
    generated_at = fields.AwareDateTime(required=True)


class RepeatedIpSchema(Schema):
    ip_hash = fields.String(required=True)
    signatures = fields.Integer(required=True)
    counted = fields.Integer(required=True)
    first_signed_at = fields.AwareDateTime(required=True)
    last_signed_at = fields.AwareDateTime(required=True)


class RepeatedIpListSchema(Schema):
    ip_hashes = fields.List(fields.Nested(RepeatedIpSchema), required=True)


class InvalidationListSchema(Schema):
    invalidations = fields.List(fields.Nested(InvalidationOutSchema), required=True)


class DryRunSchema(Schema):
    would_invalidate = fields.Integer(required=True)


class UndoneInvalidationSchema(InvalidationOutSchema):
    restored = fields.Integer(required=True)


class ErasedSchema(Schema):
    erased = fields.Integer(required=True)
    petitions = fields.Integer(required=True)


class PartnerGrantSchema(Schema):
    source = fields.String(required=True, attribute="partner.source_code")
    name = fields.String(required=True, attribute="partner.name")
    origins = fields.List(fields.String(), required=True, attribute="partner.allowed_origins")
    active = fields.Method("_active", required=True, metadata={"type": "boolean"})
    granted_at = fields.AwareDateTime(required=True)

    def _active(self, grant: Any) -> bool:
        return grant.partner.revoked_at is None


class PartnerGrantListSchema(Schema):
    partners = fields.List(fields.Nested(PartnerGrantSchema), required=True)
