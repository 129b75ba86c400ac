"""Request and response shapes (marshmallow). Unknown fields are rejected."""

from __future__ import annotations

import re
from typing import Any

import pycountry
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate

COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)

# A name field is where spam links go. Anything that looks like a URL or a bare domain
# (scheme, "www.", or a dotted host with a common top-level domain) is refused.
_URL_LIKE = re.compile(
    r"[a-z][a-z0-9+.-]*://|\bwww\.|\b[a-z0-9-]+\.(com|net|org|info|biz|io|co|ru|xyz|top|site|online|link|click|me|ly)\b",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Leading characters a spreadsheet reads as a formula.
_FORMULA_START = ("=", "+", "-", "@")


def validate_name(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")
    if value.startswith(_FORMULA_START):
        raise ValidationError("Must not start with =, +, - or @.")
    if _URL_LIKE.search(value):
        raise ValidationError("Must not contain a web address.")


def validate_country(value: str) -> None:
    if value.upper() not in COUNTRY_CODES:
        raise ValidationError("Not an ISO 3166-1 alpha-2 country code.")


class SignatureSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=[validate.Length(1, 120), validate_name])
    email = fields.Email(required=True, validate=validate.Length(max=254))
    country = fields.String(required=True, validate=validate_country)
    postal_code = fields.String(
        load_default=None,
        allow_none=True,
        validate=[
            validate.Length(max=16),
            validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9 -]*$", error="Not a valid postal code."),
        ],
    )
    source = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^[a-z0-9_-]{1,64}$", error="Use 1-64 of a-z, 0-9, '_' and '-'."),
    )
    consent_updates = fields.Boolean(load_default=False)
    # The signer's language (BCP 47, e.g. "fr" or "ar-SY"), for the confirmation email;
    # when absent, the Accept-Language header decides.
    language = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(
            r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$", error="Not a language tag."
        ),
    )
    # Honeypot: hidden from people, filled in by naive bots.
    website = fields.String(load_default="", validate=validate.Length(max=500))

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
