"""The signature log's refusals, in the error vocabulary of countersign_domain.errors."""

from __future__ import annotations

from countersign_domain.errors import Problem


class LogEmpty(Problem):
    status, code = 404, "log_empty"
    description = "this petition's log has no signed head yet"


class OutsideLog(Problem):
    status, code = 404, "outside_log"
    description = "the leaves or tree sizes asked for are not in the log"


class InvalidReceipt(Problem):
    status, code = 400, "invalid_receipt"
    description = "this is not a receipt: it is cut short or altered"


class ReceiptNotFound(Problem):
    status, code = 404, "receipt_not_found"
    description = "no signature opens with this receipt (it was erased, or never was)"
