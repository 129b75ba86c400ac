"""Shapes of the staff API (marshmallow). Unknown fields are rejected everywhere: a
mistyped filter must fail loudly, not export or invalidate more than was meant."""

from __future__ import annotations

from datetime import UTC, datetime
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

from petition_api.schemas import PetitionSchema, validate_country

# As the sign endpoint accepts them.
SOURCE = validate.Regexp(r"^[a-z0-9_-]{1,64}$", error="Use 1-64 of a-z, 0-9, '_' and '-'.")
SLUG = validate.Regexp(
    r"^[a-z0-9][a-z0-9-]{0,99}$",
    error="Use 1-100 of a-z, 0-9 and '-', starting with a letter or digit.",
)
ORIGIN = validate.Regexp(
    r"^(\*|https?://[a-z0-9.-]+(:[0-9]{1,5})?)$",
    error="Use '*' or an origin such as https://example.org (lowercase, no path).",
)
POSTGRES_INTEGER = validate.Range(min=1, max=2**31 - 1)


def in_the_future(value: datetime | None) -> None:
    if value is not None and value <= datetime.now(UTC):
        raise ValidationError("Must be in the future.")


def _datetime(**kwargs: Any) -> fields.AwareDateTime:
    """An ISO 8601 date or date-time; without a zone it is read as UTC."""
    return fields.AwareDateTime(default_timezone=UTC, **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class _PetitionFields(StrictSchema):
    title = fields.String(validate=validate.Length(1, 300))
    text = fields.String(attribute="body", validate=validate.Length(max=100_000))
    target = fields.String(validate=validate.Length(max=300))
    goal = fields.Integer(strict=True, validate=POSTGRES_INTEGER)
    allowed_origins = fields.List(fields.String(validate=ORIGIN), validate=validate.Length(max=50))
    closes_at = _datetime(allow_none=True, validate=in_the_future)
    # Count a signature only once its address is confirmed by email (double opt-in).
    require_confirmation = fields.Boolean(truthy={True}, falsy={False})


class PetitionCreateSchema(_PetitionFields):
    slug = fields.String(required=True, validate=SLUG)
    title = fields.String(required=True, validate=validate.Length(1, 300))
    # A new petition starts as a draft, or open at once; it cannot be born closed.
    status = fields.String(load_default="draft", validate=validate.OneOf(["draft", "open"]))


class PetitionUpdateSchema(_PetitionFields):
    status = fields.String(validate=validate.OneOf(["draft", "open", "closed"]))


class ManagedPetitionSchema(PetitionSchema):
    id = fields.Integer()
    allowed_origins = fields.List(fields.String())
    closed_at = fields.AwareDateTime(allow_none=True)
    require_confirmation = fields.Boolean()


class _SignedBetween(StrictSchema):
    signed_after = _datetime()  # inclusive
    signed_before = _datetime()  # exclusive

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        after, before = data.get("signed_after"), data.get("signed_before")
        if after is not None and before is not None and after >= before:
            raise ValidationError("Must be later than signed_after.", "signed_before")


class ExportQuerySchema(_SignedBetween):
    country = fields.String(validate=validate_country)
    source = fields.String(validate=SOURCE)
    include = fields.String(validate=validate.OneOf(["email"]))

    @post_load
    def _normalise(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "country" in data:
            data["country"] = data["country"].upper()
        return data


class RepeatedIpQuerySchema(StrictSchema):
    min_signatures = fields.Integer(load_default=2, validate=validate.Range(min=2))


class ErasureSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        # Addresses pasted from a request email often carry spaces around them.
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            return {**data, "email": data["email"].strip()}
        return data


class InvalidationSchema(_SignedBetween):
    CRITERIA = ("source", "ip_hash", "email_domain", "signed_after", "signed_before")

    source = fields.String(validate=SOURCE)
    # The keyed hash as the ip-hashes endpoint lists it: 64 hex digits.
    ip_hash = fields.String(validate=validate.Regexp(r"^[0-9a-fA-F]{64}$"))
    email_domain = fields.String(
        validate=validate.Regexp(
            r"^@?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", error="Not a domain such as example.org."
        )
    )
    reason = fields.String(validate=validate.Length(1, 500))
    dry_run = fields.Boolean(load_default=False)

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
