"""The error vocabulary: every refusal any door can give, typed, each once.

A ``Problem`` carries an HTTP status, a machine-readable code and a one-line
description. The domain raises them; the API's one error middleware turns them into the
JSON envelope ``{"error": {"code", "message", "fields"?}}`` (or an HTML page on HTML
routes); the command line prints the message; the OpenAPI document lists the codes of
each answer from these classes. Messages never echo what a client sent: an email or a
name must not come back in an error, nor be logged because of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class Problem(Exception):
    """A refusal a caller can act on. Subclasses set ``status``, ``code``, ``description``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    description: ClassVar[str] = "the request is not acceptable"
    # Every concrete problem by its code, for the OpenAPI document and the tests.
    by_code: ClassVar[dict[str, type[Problem]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code in Problem.by_code and Problem.by_code[cls.code] is not cls:
            raise TypeError(f"error code {cls.code!r} is declared twice")
        Problem.by_code[cls.code] = cls

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.description
        super().__init__(self.message)
        self.fields = fields
        self.headers = headers


# -- 400 ----------------------------------------------------------------------------------


class BadRequest(Problem):
    status, code = 400, "bad_request"
    description = "the request is malformed"


class InvalidJson(Problem):
    status, code = 400, "invalid_json"
    description = "the body is not valid JSON"


class InvalidForm(Problem):
    status, code = 400, "invalid_form"
    description = "the body is not a well-formed form"


# -- 401 / 403 ----------------------------------------------------------------------------


class Unauthorized(Problem):
    status, code = 401, "unauthorized"
    description = "credentials are missing or malformed"


class InvalidToken(Problem):
    status, code = 401, "invalid_token"
    description = "the staff token is unknown or revoked"


class SignInFailed(Problem):
    status, code = 401, "sign_in_failed"
    description = "this sign-in link or token does not work: unknown, used, expired or revoked"


class SessionExpired(Problem):
    status, code = 401, "session_expired"
    description = "the console session has ended: sign in again"


class Forbidden(Problem):
    status, code = 403, "forbidden"
    description = "this is not allowed"


class InsufficientRole(Problem):
    status, code = 403, "insufficient_role"
    description = "this needs a role the caller does not have"


class CsrfRejected(Problem):
    status, code = 403, "csrf_rejected"
    description = "this form did not come from the console page, or is too old: reload and retry"


class OriginNotAllowed(Problem):
    status, code = 403, "origin_not_allowed"
    description = "this origin may not call this endpoint"


class PetitionNotGranted(Problem):
    status, code = 403, "petition_not_granted"
    description = "this partner key is not granted this petition"


# -- 404 / 405 ----------------------------------------------------------------------------


class NotFound(Problem):
    status, code = 404, "not_found"
    description = "no such resource"


class PetitionNotFound(Problem):
    status, code = 404, "petition_not_found"
    description = "no such petition"


class InvalidationNotFound(Problem):
    status, code = 404, "invalidation_not_found"
    description = "no such invalidation"


class PartnerNotFound(Problem):
    status, code = 404, "partner_not_found"
    description = "no active partner has this source code"


class GrantNotFound(Problem):
    status, code = 404, "grant_not_found"
    description = "this partner is not granted this petition"


class StaffTokenNotFound(Problem):
    status, code = 404, "staff_token_not_found"
    description = "no active staff token has this name"


class StaffAccountNotFound(Problem):
    status, code = 404, "staff_account_not_found"
    description = "no active staff account has this address"


class TranslationNotFound(Problem):
    status, code = 404, "translation_not_found"
    description = "the petition has no text in this language"


class MethodNotAllowed(Problem):
    status, code = 405, "method_not_allowed"
    description = "this method is not allowed here"


# -- 409 ----------------------------------------------------------------------------------


class PetitionClosed(Problem):
    status, code = 409, "petition_closed"
    description = "this petition is not taking signatures"


class PetitionExists(Problem):
    status, code = 409, "petition_exists"
    description = "a petition with this slug exists already"


class StaffNameTaken(Problem):
    status, code = 409, "staff_name_taken"
    description = "a staff token with this name exists already (names are never reused)"


class StaffAccountExists(Problem):
    status, code = 409, "staff_account_exists"
    description = "an active staff account has this address, or an account (even removed) this name"


class InvalidStatusTransition(Problem):
    status, code = 409, "invalid_status_transition"
    description = "this status move is not allowed: draft to open, open to closed, closed to open"


class ClosesAtPassed(Problem):
    status, code = 409, "closes_at_passed"
    description = "the close date has passed: give a later one (or none)"


class DefaultLanguageKept(Problem):
    status, code = 409, "default_language_kept"
    description = (
        "the text in the petition's default language cannot be removed: make another "
        "language the default first"
    )


class InvalidationUndone(Problem):
    status, code = 409, "invalidation_undone"
    description = "this invalidation was undone already"


# -- 413 / 415 / 422 / 429 ----------------------------------------------------------------


class PayloadTooLarge(Problem):
    status, code = 413, "payload_too_large"
    description = "request body is too large"


class UnsupportedMediaType(Problem):
    status, code = 415, "unsupported_media_type"
    description = "this content type is not accepted here"


class ValidationFailed(Problem):
    status, code = 422, "validation_failed"
    description = "some fields are invalid"


class RateLimited(Problem):
    status, code = 429, "rate_limited"
    description = "too many requests from here; try again later"


# -- 500 / 503 ----------------------------------------------------------------------------


class InternalError(Problem):
    status, code = 500, "internal_error"
    description = "internal error"


class ServiceUnavailable(Problem):
    status, code = 503, "service_unavailable"
    description = "a back-end service is unavailable; try again shortly"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "1"})
        super().__init__(message, **kwargs)


class CountsUnavailable(ServiceUnavailable):
    code = "counts_unavailable"
    description = "the live counts are being rebuilt; try again in a moment"
