"""Request and response shapes (marshmallow). Unknown fields are rejected.

Signature fields are checked against the patterns of petition_api/patterns.py, which
the OpenAPI document publishes as they are: what the document says is what is enforced.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate

from petition_api import patterns

_NAME = re.compile(patterns.NAME)
_WEB_ADDRESS = re.compile(patterns.WEB_ADDRESS)
_CONTROL = re.compile(patterns.one_of(patterns.CONTROL))


def validate_name(value: str) -> None:
    """The name pattern decides; the messages say which of its rules failed."""
    if _NAME.search(value):
        return
    if not 1 <= len(value) <= 120:
        raise ValidationError("Length must be between 1 and 120.")
    if _CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")
    if value.startswith(tuple(patterns.FORMULA_START)):
        raise ValidationError("Must not start with =, +, - or @.")
    if _WEB_ADDRESS.search(value):
        raise ValidationError("Must not contain a web address.")
    raise ValidationError("Not a valid name.")


def _matching(pattern: str, error: str) -> validate.Regexp:
    return validate.Regexp(pattern, error=error)


def validate_country(value: str) -> None:
    """An ISO 3166-1 alpha-2 code, in any case (for filters outside the signature body)."""
    if value.upper() not in patterns.COUNTRY_CODES:
        raise ValidationError("Not an ISO 3166-1 alpha-2 country code.")


class JsonBoolean(fields.Boolean):
    """true or false only: marshmallow's Boolean also takes 1, "yes", "on" and the like,
    which a JSON client has no reason to send (HTML forms do: SignatureFormSchema)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class SignatureSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(
        required=True,
        validate=validate_name,
        metadata={"pattern": patterns.NAME, "description": "1-120 characters, no web address."},
    )
    email = fields.String(
        required=True,
        validate=_matching(patterns.EMAIL, "Not a valid email address."),
        metadata={"description": "An email address, up to 254 characters."},
    )
    country = fields.String(
        required=True,
        validate=_matching(patterns.COUNTRY, "Not an ISO 3166-1 alpha-2 country code."),
        metadata={"description": "ISO 3166-1 alpha-2, in any case."},
    )
    postal_code = fields.String(
        load_default=None,
        allow_none=True,
        validate=_matching(patterns.POSTAL_CODE, "Not a valid postal code."),
    )
    source = fields.String(
        load_default=None,
        allow_none=True,
        validate=_matching(patterns.SOURCE, "Use 1-64 of a-z, 0-9, '_' and '-'."),
        metadata={"description": "The partner or campaign code."},
    )
    consent_updates: fields.Boolean = JsonBoolean(load_default=False)
    language = fields.String(
        load_default=None,
        allow_none=True,
        validate=_matching(patterns.LANGUAGE, "Not a language tag."),
        metadata={
            "description": "For the confirmation email (BCP 47, e.g. fr or ar-SY); "
            "without it, Accept-Language decides."
        },
    )
    # Honeypot: hidden from people, filled in by naive bots.
    website = fields.String(
        load_default="",
        validate=_matching(patterns.WEBSITE, "Longer than 500 characters."),
        metadata={"description": "Must stay empty (a honeypot for bots)."},
    )

    @pre_load
    def _tidy(self, data: Any, **_: Any) -> Any:
        if not isinstance(data, dict):
            return data
        tidy = {
            key: value.strip() if isinstance(value, str) else value for key, value in data.items()
        }
        for optional in ("postal_code", "source", "language"):
            if tidy.get(optional) == "":
                tidy[optional] = None
        return tidy

    @post_load
    def _normalise(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["country"] = data["country"].upper()
        if data.get("postal_code"):
            data["postal_code"] = data["postal_code"].upper()
        return data


class ConfirmationRequestSchema(Schema):
    """The form that asks for a new confirmation link."""

    class Meta:
        unknown = RAISE

    email = fields.Email(required=True, validate=validate.Length(max=254))


class SignatureFormSchema(SignatureSchema):
    """The same fields posted as an HTML form, where a checkbox sends "on"."""

    consent_updates = fields.Boolean(load_default=False)


class PetitionSchema(Schema):
    slug = fields.String()
    title = fields.String()
    text = fields.String(attribute="body")
    target = fields.String()
    goal = fields.Integer()
    status = fields.String()
    created_at = fields.AwareDateTime()
    closes_at = fields.AwareDateTime(allow_none=True)


class CountryCountSchema(Schema):
    code = fields.String()
    count = fields.Integer()


class CountsSchema(Schema):
    slug = fields.String()
    total = fields.Integer()
    goal = fields.Integer()
    countries = fields.List(fields.Nested(CountryCountSchema))
    updated_at = fields.AwareDateTime(allow_none=True)
    # True when Redis could not give the figures and these are the last ones known.
    stale = fields.Boolean()


class SignedSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["counted"]))


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ReadinessSchema(Schema):
    postgres = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    redis = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable, stable"})
    message = fields.String(required=True, metadata={"description": "for people; may change"})
    field_errors = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.Raw(),
        metadata={"description": "per field, what is wrong with it (validation_failed)"},
    )


class ErrorSchema(Schema):
    """The one shape of every error answer."""

    error = fields.Nested(ErrorDetailSchema, required=True)
