"""Request and response shapes (marshmallow). Unknown fields are rejected.

Signature fields are checked against the patterns of countersign_domain/patterns.py, which
the OpenAPI document publishes as they are: what the document says is what is enforced.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
)

from countersign_domain import patterns

_NAME = re.compile(patterns.NAME)
_WEB_ADDRESS = re.compile(patterns.WEB_ADDRESS)
_CONTROL = re.compile(patterns.one_of(patterns.CONTROL))
_BIDI_CONTROL = re.compile(patterns.one_of(patterns.BIDI_CONTROLS))
_LETTER = re.compile(patterns.one_of(patterns.LETTERS))
# Lone surrogates: what bytes that are not UTF-8 become in a form (petition_api.forms),
# and what JSON can carry; no text has them.
_BROKEN = re.compile(f"[\\ud800-\\udfff{patterns.REPLACEMENT}]")


def validate_name(value: str) -> None:
    """The name pattern decides; the messages say which of its rules failed."""
    if _NAME.search(value):
        return
    if _BROKEN.search(value):
        raise ValidationError("Not valid text: bytes that are not UTF-8.")
    if not 1 <= len(value) <= 120:
        raise ValidationError("Length must be between 1 and 120.")
    if _CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")
    if _BIDI_CONTROL.search(value):
        raise ValidationError("Must not contain bidirectional override or isolate characters.")
    if not _LETTER.search(value):
        raise ValidationError("Must contain a letter.")
    if value.startswith(tuple(patterns.FORMULA_START)):
        raise ValidationError("Must not start with =, +, - or @.")
    if _WEB_ADDRESS.search(value):
        raise ValidationError("Must not contain a web address.")
    raise ValidationError("Not a valid name.")


class WholeMatch(validate.Regexp):
    """A pattern the whole value must match, as JSON Schema reads ``^...$`` (Python's
    ``$`` also matches before a final newline). apispec publishes it as ``pattern``."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# A petition's slug, wherever the API reads one (the path's is published by
# petition_api/openapi.py from the same pattern).
valid_slug = WholeMatch(patterns.SLUG, error=patterns.SLUG_RULE)

# Text Postgres can store: no NUL character (JSON and forms can carry one).
STORABLE_TEXT = r"^[^\u0000]*$"
storable_text = WholeMatch(STORABLE_TEXT, error="Must not contain NUL characters.")


def _matching(pattern: str, error: str) -> validate.Regexp:
    return validate.Regexp(pattern, error=error)


class JsonBoolean(fields.Boolean):
    """true or false only: marshmallow's Boolean also takes 1, "yes", "on" and the like,
    which a JSON client has no reason to send (HTML forms do: SignatureFormSchema)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


LANGUAGE_TEXT = (
    "For the confirmation email (BCP 47, e.g. fr or ar-SY); without it, Accept-Language decides."
)
OPTIONAL_FIELDS = ("postal_code", "source", "language")


def _optional(
    pattern: str, error: str, *, nullable: bool = True, description: str | None = None
) -> fields.String:
    """An optional text field; empty (or only spaces) is the same as absent."""
    return fields.String(
        load_default=None,
        allow_none=nullable,
        validate=_matching(pattern, error),
        metadata={"description": description} if description else {},
    )


class SignatureSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(
        required=True,
        validate=validate_name,
        metadata={
            "pattern": patterns.NAME,
            "description": "1-120 characters with a letter; no web address, no bidirectional "
            "controls. Stored in Unicode NFC.",
        },
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
    postal_code = _optional(patterns.POSTAL_CODE, "Not a valid postal code.")
    source = _optional(
        patterns.SOURCE,
        "Use 1-64 of a-z, 0-9, '_' and '-'.",
        description="The partner or campaign code.",
    )
    consent_updates: fields.Boolean = JsonBoolean(load_default=False)
    language = _optional(patterns.LANGUAGE, "Not a language tag.", description=LANGUAGE_TEXT)
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
        for optional in OPTIONAL_FIELDS:
            if tidy.get(optional) == "":
                del tidy[optional]
        return tidy

    @post_load
    def _normalise(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # One spelling of each name: "José" typed composed or decomposed is stored alike.
        data["name"] = unicodedata.normalize("NFC", data["name"])
        data["country"] = data["country"].upper()
        if data.get("postal_code"):
            data["postal_code"] = data["postal_code"].upper()
        return data


class ConfirmationRequestSchema(Schema):
    """The form that asks for a new confirmation link."""

    class Meta:
        unknown = RAISE

    # As the sign endpoint accepts addresses (with any spaces around them stripped).
    email = fields.String(
        required=True,
        validate=_matching(patterns.EMAIL, "Not a valid email address."),
        metadata={"description": "The address that signed."},
    )

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            return {**data, "email": data["email"].strip()}
        return data


class SignatureFormSchema(SignatureSchema):
    """The same fields posted as an HTML form, where a checkbox sends "on" and nothing is
    null: an optional field left empty is absent."""

    consent_updates = fields.Boolean(load_default=False)
    postal_code = _optional(patterns.POSTAL_CODE, "Not a valid postal code.", nullable=False)
    source = _optional(
        patterns.SOURCE,
        "Use 1-64 of a-z, 0-9, '_' and '-'.",
        nullable=False,
        description="The partner or campaign code.",
    )
    language = _optional(
        patterns.LANGUAGE, "Not a language tag.", nullable=False, description=LANGUAGE_TEXT
    )


# A language the API reads in a query (?lang=fr, ?lang=pt-BR): a BCP 47 tag, of which the
# primary subtag decides.
valid_language = WholeMatch(f"^{patterns.LANGUAGE_TAG}$", error="Not a language tag.")


class LanguageQuerySchema(Schema):
    """``?lang=``: an explicit choice of language; other parameters are ignored."""

    class Meta:
        unknown = EXCLUDE

    lang = fields.String(
        validate=valid_language,
        metadata={
            "description": "The language to read the petition in (BCP 47, e.g. fr or ar-SY); "
            "without it, Accept-Language, then the petition's default language."
        },
    )


class PageLanguageQuerySchema(Schema):
    """``?lang=`` on a page for people: a choice of language, ignored when it is not a
    language tag (a shared link with a damaged ``lang`` still opens the page)."""

    class Meta:
        unknown = EXCLUDE

    lang = fields.String(
        metadata={
            "description": "The language to read the page in (BCP 47, e.g. fr or ar-SY); "
            "ignored if it is not a language tag. Without it, Accept-Language, then the "
            "petition's default language."
        },
    )


class PetitionSchema(Schema):
    slug = fields.String()
    title = fields.String()
    text = fields.String(attribute="body")
    target = fields.String()
    goal = fields.Integer()
    status = fields.String()
    created_at = fields.AwareDateTime()
    closes_at = fields.AwareDateTime(allow_none=True)
    default_lang = fields.String(metadata={"description": "The petition's default language."})
    languages = fields.List(
        fields.String(),
        metadata={"description": "Every language the petition is written in, default first."},
    )


class PrivacyNoticeSchema(Schema):
    data_controller = fields.String(
        allow_none=True, metadata={"description": "Who holds the signers' data."}
    )
    policy_url = fields.String(
        allow_none=True, metadata={"description": "Where its privacy policy is."}
    )


class PublicPetitionSchema(PetitionSchema):
    lang = fields.String(
        metadata={"description": "The language of title, text and target (Content-Language)."}
    )
    privacy = fields.Nested(
        PrivacyNoticeSchema,
        metadata={"description": "To show beside the consent box (null parts: not set)."},
    )


class CountryCountSchema(Schema):
    code = fields.String(
        metadata={
            "description": "ISO 3166-1 alpha-2, or `other`: every country with fewer "
            "signatures than the deployment shows on their own, together (last)."
        }
    )
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


class PendingConfirmationSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["pending_confirmation"]))


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


class CompiledLoad:
    """``schema.load`` for a body whose every field is plainly valid, without marshmallow's
    per-call machinery (field lookups, processor dispatch, error bookkeeping): what can be
    worked out once is, here, and each field is checked by the schema's own validators,
    after the schema's own pre_load and before its own post_load. Any body it is not sure
    of, an invalid one above all, goes to ``schema.load`` itself, which then says what is
    wrong. Only String and JsonBoolean fields are understood; a schema with another kind
    is refused when compiled, not loaded differently."""

    def __init__(self, schema: SignatureSchema) -> None:
        self._schema = schema
        self._fields: list[tuple[str, type, bool, Any, bool, list[Any]]] = []
        for name, field in schema.load_fields.items():
            if field.data_key not in (None, name):
                raise TypeError(f"{name}: a data_key is not compiled")
            if isinstance(field, JsonBoolean):
                kind: type = bool
            elif type(field) is fields.String:
                kind = str
            else:
                raise TypeError(f"{name}: a {type(field).__name__} field is not compiled")
            default = field.load_default
            if callable(default):
                raise TypeError(f"{name}: a callable default is not compiled")
            self._fields.append(
                (name, kind, field.required, default, field.allow_none, list(field.validators))
            )
        self._names = frozenset(name for name, *_ in self._fields)

    def load(self, data: dict[str, Any]) -> dict[str, Any]:
        loaded = self.plainly_valid(data)
        return loaded if loaded is not None else dict(self._schema.load(data))

    def plainly_valid(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """What ``schema.load(data)`` returns, or None when not sure it would."""
        tidy = self._schema._tidy(data)
        if not self._names.issuperset(tidy):
            return None  # unknown fields
        loaded: dict[str, Any] = {}
        for name, kind, required, default, allow_none, validators in self._fields:
            if name not in tidy:
                if required:
                    return None
                loaded[name] = default
                continue
            value = tidy[name]
            if value is None and allow_none:
                loaded[name] = None
                continue
            if type(value) is not kind:
                return None
            for validator in validators:
                try:
                    if validator(value) is False:
                        return None
                except ValidationError:
                    return None
            loaded[name] = value
        return dict(self._schema._normalise(loaded))
