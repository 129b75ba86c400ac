"""The public signature log: signed heads, leaves, proofs, the fraud ledger, receipts.

Everything here is public and the same for every reader: what lets anyone recompute a
petition's count (``countersign verify``), and a signer check their receipt. Reads come
from Postgres; leaves and proofs of a given size never change, so they may be cached
for good.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC
from typing import Any

import asyncpg
from aiohttp import web
from marshmallow import RAISE, Schema, fields, validate

from countersign_domain.errors import PetitionNotFound, ServiceUnavailable, ValidationFailed
from countersign_domain.petitions import Petition
from countersign_domain.signature_log import store
from countersign_domain.signature_log.problems import (
    InvalidReceipt,
    LogEmpty,
    OutsideLog,
    ReceiptNotFound,
)
from countersign_domain.signature_log.receipts import CODE, Receipt, open_receipt
from countersign_domain.signature_log.store import SignedHead
from petition_api import appkeys as keys
from petition_api.openapi import SLUG, H, Reply, documented
from petition_api.petitions import public_petition

MAX_LEAVES = 10_000  # per /log/leaves answer
MAX_HEADS = 1_000  # per /log/heads answer
LARGEST = 2**62  # beyond any log; keeps every number a Postgres bigint
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
FRESH = {"Cache-Control": "no-cache"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- shapes -------------------------------------------------------------------------------


def _count(description: str) -> fields.Integer:
    return fields.Integer(
        required=True, validate=validate.Range(0, LARGEST), metadata={"description": description}
    )


class StrictQuery(Schema):
    class Meta:
        unknown = RAISE


class LogHeadsQuery(StrictQuery):
    after = fields.Integer(
        load_default=0,
        validate=validate.Range(0, LARGEST),
        metadata={"description": "Only heads of larger trees (a cursor: the last size seen)."},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_HEADS))


class LogLeavesQuery(StrictQuery):
    start = _count("The first leaf's index.")
    end = fields.Integer(
        required=True,
        validate=validate.Range(1, LARGEST),
        metadata={"description": f"Past the last leaf; answers stop {MAX_LEAVES} after start."},
    )


class LogConsistencyQuery(StrictQuery):
    first = fields.Integer(required=True, validate=validate.Range(1, LARGEST))
    second = fields.Integer(required=True, validate=validate.Range(1, LARGEST))


class LogInclusionQuery(StrictQuery):
    leaf = _count("The leaf's index.")
    size = fields.Integer(required=True, validate=validate.Range(1, LARGEST))


class LogHeadSchema(Schema):
    tree_size = fields.Integer(required=True)
    root_hash = fields.String(required=True, metadata={"description": "base64"})
    timestamp = fields.AwareDateTime(required=True)
    counted = fields.Integer(required=True)
    checkpoint = fields.String(
        required=True,
        metadata={"description": "The signed checkpoint (C2SP signed note); the README says how."},
    )


class LogHeadsSchema(Schema):
    heads = fields.List(fields.Nested(LogHeadSchema), required=True)
    next = fields.Integer(
        required=True, allow_none=True, metadata={"description": "`after` for the next page"}
    )


def _base64_list() -> fields.List[str]:
    return fields.List(fields.String(), required=True, metadata={"description": "base64"})


class LogLeavesSchema(Schema):
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)
    leaves = _base64_list()


class LogConsistencySchema(Schema):
    first = fields.Integer(required=True)
    second = fields.Integer(required=True)
    proof = _base64_list()


class LogInclusionSchema(Schema):
    leaf = fields.Integer(required=True)
    size = fields.Integer(required=True)
    proof = _base64_list()


class LogSummarySchema(Schema):
    tree_size = fields.Integer(required=True)
    counted = fields.Integer(required=True)
    invalidated = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "by reason class"},
    )
    erased = fields.Integer(required=True)
    removed = fields.Integer(required=True)
    head = fields.Nested(LogHeadSchema, required=True)


class LogPublicKeySchema(Schema):
    name = fields.String(required=True)
    algorithm = fields.String(required=True, validate=validate.OneOf(["Ed25519"]))
    public_key = fields.String(required=True, metadata={"description": "base64, 32 bytes"})
    vkey = fields.String(required=True, metadata={"description": "signed-note verifier key"})


class LogPublicKeysSchema(Schema):
    keys = fields.List(fields.Nested(LogPublicKeySchema), required=True)


class ReceiptLeafSchema(Schema):
    index = fields.Integer(required=True)
    kind = fields.String(
        required=True,
        validate=validate.OneOf(["counted", "invalidated", "restored", "erased", "removed"]),
    )
    hour = fields.AwareDateTime(required=True)
    reason_class = fields.String(required=True)


class ReceiptSchema(Schema):
    petition = fields.String(required=True)
    counts = fields.Boolean(required=True, metadata={"description": "by the signature's last leaf"})
    leaves = fields.List(fields.Nested(ReceiptLeafSchema), required=True)
    head = fields.Nested(LogHeadSchema, required=True, allow_none=True)
    inclusion = fields.List(fields.Nested(LogInclusionSchema), required=True)


def head_json(signed: SignedHead) -> dict[str, Any]:
    return {
        "tree_size": signed.tree_size,
        "root_hash": b64(signed.root_hash),
        "timestamp": signed.signed_at.astimezone(UTC).isoformat(),
        "counted": signed.totals.counted,
        "checkpoint": signed.note,
    }


# -- handlers -----------------------------------------------------------------------------

# What every read of a petition's log can answer besides its own reply.
READ_PROBLEMS = (PetitionNotFound, LogEmpty, ServiceUnavailable)
TAGS = ("signature log",)
PETITION_SLUG = {"slug": SLUG}


async def _latest(request: web.Request, petition: Petition) -> SignedHead:
    signed = await store.latest_head(request.app[keys.DB], petition.id)
    if signed is None:
        raise LogEmpty
    return signed


@documented(
    "The keys that sign tree heads",
    tags=TAGS,
    description="Ed25519 public keys, oldest first; the delivery page prints them too.",
    responses={200: Reply("The keys.", LogPublicKeysSchema)},
    problems=(ServiceUnavailable,),
)
async def public_key(request: web.Request) -> web.Response:
    found = await store.public_keys(request.app[keys.DB])
    body = [
        {"name": k.name, "algorithm": "Ed25519", "public_key": b64(k.public_key), "vkey": k.vkey}
        for k in found
    ]
    return web.json_response({"keys": body}, headers=FRESH)


@documented(
    "A petition log's latest signed head",
    tags=TAGS,
    path_parameters=PETITION_SLUG,
    responses={200: Reply("The head.", LogHeadSchema)},
    problems=READ_PROBLEMS,
)
async def head(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    return web.json_response(head_json(await _latest(request, petition)), headers=FRESH)


@documented(
    "Every signed head of a petition's log, smallest tree first",
    tags=TAGS,
    path_parameters=PETITION_SLUG,
    query=LogHeadsQuery,
    responses={200: Reply("A page of heads.", LogHeadsSchema)},
    problems=(PetitionNotFound, ValidationFailed, ServiceUnavailable),
)
async def heads(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    query = LogHeadsQuery().load(dict(request.query))
    page = await store.heads_after(
        request.app[keys.DB], petition.id, query["after"], query["limit"]
    )
    following = page[-1].tree_size if len(page) == query["limit"] else None
    return web.json_response(
        {"heads": [head_json(h) for h in page], "next": following}, headers=FRESH
    )


def _reading(
    summary: str, query: type[Schema], reply: Reply, description: str = ""
) -> Callable[[H], H]:
    """The documentation of a read of the log up to its latest head, with a query."""
    return documented(
        summary,
        tags=TAGS,
        path_parameters=PETITION_SLUG,
        description=description,
        query=query,
        responses={200: reply},
        problems=(*READ_PROBLEMS, OutsideLog, ValidationFailed),
    )


async def _read(request: web.Request, query: type[Schema]) -> tuple[int, dict[str, int], int]:
    """The petition's id, the query, and the size of the latest signed head."""
    petition = await public_petition(request)
    values = query().load(dict(request.query))
    return petition.id, values, (await _latest(request, petition)).tree_size


def _proof(asked: dict[str, int], proof: list[bytes]) -> web.Response:
    # A proof between two given sizes never changes.
    return web.json_response({**asked, "proof": [b64(h) for h in proof]}, headers=IMMUTABLE)


@_reading(
    "Leaves of a petition's log",
    LogLeavesQuery,
    Reply("The leaves.", LogLeavesSchema),
    f"Leaves [start, end), at most {MAX_LEAVES}, cut at the latest signed head (`end` says "
    "where the answer stops); each is the base64 of its bytes (README: the leaf format).",
)
async def leaves(request: web.Request) -> web.Response:
    petition_id, query, size = await _read(request, LogLeavesQuery)
    start = query["start"]
    end = min(query["end"], size, start + MAX_LEAVES)
    if start >= end:
        raise OutsideLog
    found = await store.leaves(request.app[keys.DB], petition_id, start, end)
    return web.json_response(
        {"start": start, "end": end, "leaves": [b64(leaf) for leaf in found]},
        headers=IMMUTABLE if end == query["end"] else FRESH,
    )


@_reading(
    "A consistency proof between two sizes of a petition's log (RFC 9162 2.1.4)",
    LogConsistencyQuery,
    Reply("The proof, base64 hashes.", LogConsistencySchema),
)
async def consistency(request: web.Request) -> web.Response:
    petition_id, query, size = await _read(request, LogConsistencyQuery)
    first, second = query["first"], query["second"]
    if not first <= second <= size:
        raise OutsideLog
    proof = await store.consistency_proof(request.app[keys.DB], petition_id, first, second)
    return _proof({"first": first, "second": second}, proof)


@_reading(
    "An inclusion proof of one leaf in a size of a petition's log (RFC 9162 2.1.3)",
    LogInclusionQuery,
    Reply("The proof, base64 hashes.", LogInclusionSchema),
)
async def inclusion(request: web.Request) -> web.Response:
    petition_id, query, size = await _read(request, LogInclusionQuery)
    leaf, tree_size = query["leaf"], query["size"]
    if not leaf < tree_size <= size:
        raise OutsideLog
    proof = await store.inclusion_proof(request.app[keys.DB], petition_id, leaf, tree_size)
    return _proof({"leaf": leaf, "size": tree_size}, proof)


@documented(
    "The fraud ledger of a petition: what its leaves add up to",
    tags=TAGS,
    path_parameters=PETITION_SLUG,
    description=(
        "At the latest signed head: the counted total, signatures invalidated (and not "
        "restored) by reason class, erased at their signer's request, and removed otherwise. "
        "Each is recomputable from the leaves."
    ),
    responses={200: Reply("The totals and the head they belong to.", LogSummarySchema)},
    problems=READ_PROBLEMS,
)
async def summary(request: web.Request) -> web.Response:
    petition = await public_petition(request)
    signed = await _latest(request, petition)
    totals = signed.totals
    return web.json_response(
        {
            "tree_size": signed.tree_size,
            "counted": totals.counted,
            "invalidated": totals.invalidated,
            "erased": totals.erased,
            "removed": totals.removed,
            "head": head_json(signed),
        },
        headers=FRESH,
    )


@documented(
    "Check a receipt: the signature's leaves, and their inclusion in the latest head",
    tags=TAGS,
    description=(
        "The receipt (`<slug>.<signature id>.<secret>`) is what the signer got when their "
        "signature counted; anyone holding it can check it. The same 404 answers every "
        "receipt the server cannot open, including one whose signature was erased. A "
        "signature that does not count yet (waiting, or held for review) has no leaves."
    ),
    path_parameters={"code": {"type": "string", "pattern": CODE}},
    responses={200: Reply("The signature's leaves, with proofs.", ReceiptSchema)},
    problems=(InvalidReceipt, ReceiptNotFound, ServiceUnavailable),
)
async def check_receipt(request: web.Request) -> web.Response:
    receipt = Receipt.parse(request.match_info["code"])
    db = request.app[keys.DB]
    opened = await open_receipt(db, receipt)
    if opened is None:
        raise ReceiptNotFound
    signed = await store.latest_head(db, opened.petition_id)
    size = signed.tree_size if signed else 0
    proofs = [
        {
            "leaf": index,
            "size": size,
            "proof": [
                b64(h) for h in await store.inclusion_proof(db, opened.petition_id, index, size)
            ],
        }
        for index, _ in opened.leaves
        if index < size
    ]
    return web.json_response(
        {
            "petition": receipt.slug,
            "counts": opened.counts,
            "leaves": [
                {
                    "index": index,
                    "kind": leaf.kind.name.lower(),
                    "hour": leaf.at.isoformat(),
                    "reason_class": leaf.reason_class,
                }
                for index, leaf in opened.leaves
            ],
            "head": head_json(signed) if signed else None,
            "inclusion": proofs,
        },
        headers={"Cache-Control": "no-store"},
    )


# -- the delivery page's section --------------------------------------------------------------


async def delivery_log(
    pool: asyncpg.Pool | asyncpg.Connection, petition_id: int
) -> dict[str, Any] | None:
    """What petition_api/admin/templates/signature_log.html prints: the final signed head,
    the fraud ledger it sums up, and the keys; None while nothing has counted."""
    signed = await store.latest_head(pool, petition_id)
    if signed is None:
        return None
    return {
        "head": signed,
        "invalidated": sorted(signed.totals.invalidated.items()),
        "keys": [(k.name, b64(k.public_key)) for k in await store.public_keys(pool)],
    }
