"""``countersign verify``: recompute a petition's count from its public signature log.

It downloads every signed head and every leaf over HTTP, checks each head's signature,
recomputes the tree and the totals at each head's size, checks the server's own
summary, and checks the heads saved by earlier runs (``--heads FILE``, a monitor's
memory) against the log as it is now: each must still be in it, and the server must
prove it extends them. Any discrepancy makes it exit 1 (2 when it could not run).
Optionally it co-signs the newest head as a witness (C2SP tlog-cosignature).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from countersign.cli.verifier import (
    Checkpoint,
    Discrepancy,
    LogAudit,
    Totals,
    VerifierKey,
    note_key_id,
)
from countersign_domain.signature_log import merkle

PAGE = 10_000  # leaves per request: the server's largest page
IN_FLIGHT = 4  # pages requested ahead while earlier ones are checked
_LOCATION = re.compile(
    r"^(?P<base>https?://[^/?#]+(?:/[^?#]*?)??)/(?:v1/)?(?:petitions|embed)/(?P<slug>[a-z0-9][a-z0-9-]{0,99})(?:[/?#].*)?$"
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_RECEIPT = re.compile(r"^([a-z0-9][a-z0-9-]{0,99})\.([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{22})$")


class Unreachable(Exception):
    """The server could not be asked (network, or an answer that is not JSON)."""


def locate(target: str, server: str) -> tuple[str, str]:
    """(API base URL, petition slug) from a petition URL, or a slug and ``server``."""
    if _SLUG.match(target):
        return server.rstrip("/"), target
    match = _LOCATION.match(target)
    if not match:
        raise click.BadParameter("give a petition's slug or URL", param_hint="URL-OR-SLUG")
    return match["base"].rstrip("/"), match["slug"]


def commitment_of(receipt: str) -> tuple[str, bytes]:
    """(slug, commitment) of a receipt, computed here from the README's formula."""
    match = _RECEIPT.match(receipt)
    if not match:
        raise click.BadParameter("not a receipt", param_hint="--receipt")
    secret = base64.urlsafe_b64decode(match[3] + "==")
    signature = int(match[2]).to_bytes(8, "big")
    return match[1], hashlib.sha256(b"countersign commitment v1" + signature + secret).digest()


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def problem(self, line: str) -> None:
        self.problems.append(line)


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str, slug: str) -> None:
        self.session, self.base, self.slug = session, base, slug

    async def get(self, path: str, **query: int) -> tuple[int, Any]:
        url = f"{self.base}{path}"
        try:
            async with self.session.get(url, params=query) as response:
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unreachable(f"{url}: {type(exc).__name__}") from None

    async def log(self, part: str, **query: int) -> tuple[int, Any]:
        return await self.get(f"/v1/petitions/{self.slug}/log/{part}", **query)

    async def heads(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            status, page = await self.log("heads", after=after, limit=1000)
            if status != 200:
                raise Unreachable(f"heads: HTTP {status}")
            found.extend(page["heads"])
            if page["next"] is None:
                return found
            after = page["next"]

    async def leaves(self, size: int) -> AsyncIterator[bytes]:
        """Leaves [0, size), a few pages requested ahead."""
        starts = iter(range(0, size, PAGE))
        pending: list[asyncio.Task[tuple[int, Any]]] = []

        def request_next() -> None:
            start = next(starts, None)
            if start is not None:
                pending.append(
                    asyncio.create_task(
                        self.log("leaves", start=start, end=min(start + PAGE, size))
                    )
                )

        for _ in range(IN_FLIGHT):
            request_next()
        try:
            while pending:
                status, page = await pending.pop(0)
                request_next()
                if status != 200:
                    raise Discrepancy(f"leaves below the latest head's size: HTTP {status}")
                for leaf in page["leaves"]:
                    yield base64.b64decode(leaf)
        finally:
            for task in pending:
                task.cancel()


# -- the monitor's memory ----------------------------------------------------------------


def load_saved(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {"version": 1, "logs": {}}
    try:
        saved: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: cannot read it ({type(exc).__name__})") from None
    return saved


def store_saved(path: Path, saved: dict[str, Any]) -> None:
    draft = path.with_name(path.name + ".partial")
    draft.write_text(json.dumps(saved, indent=1) + "\n")
    draft.replace(path)


# -- the audit -------------------------------------------------------------------------------


async def audit(
    api: Api, saved_log: dict[str, Any], pinned: str | None, receipt: bytes | None, report: Report
) -> tuple[list[Checkpoint], VerifierKey | None]:
    """Check everything; returns the heads checked and the key that signed them."""
    status, published = await api.get("/v1/log/public-key")
    if status != 200:
        raise Unreachable(f"public key: HTTP {status}")
    keys = [VerifierKey(k["name"], base64.b64decode(k["public_key"])) for k in published["keys"]]
    trusted = pinned or saved_log.get("public_key")
    if trusted:
        keys = [k for k in keys if base64.b64encode(k.public).decode() == trusted]
        if not keys:
            keys = [VerifierKey(saved_log.get("key_name", ""), base64.b64decode(trusted))]
    heads = [Checkpoint.parse(head["checkpoint"]) for head in await api.heads()]
    if not heads:
        report.say("the log is empty: nothing has counted yet")
        return [], None

    signer = next((k for k in keys if all(k.signed(h) for h in heads)), None)
    if signer is None:
        report.problem(
            "not every head is signed by the log's key" + (" (the one saved)" if trusted else "")
        )
    origins = {h.origin for h in heads}
    if len(origins) != 1 or not next(iter(origins)).endswith(f"/{api.slug}"):
        report.problem(f"heads name other logs: {sorted(origins)}")
    for earlier, later in itertools.pairwise(heads):
        if later.size <= earlier.size or later.time < earlier.time:
            report.problem(f"heads out of order at tree size {later.size}")

    saved_heads = [Checkpoint.parse(note) for note in saved_log.get("heads", [])]
    latest = heads[-1]
    sizes = {h.size for h in heads} | {h.size for h in saved_heads if h.size <= latest.size}
    watched: dict[bytes, list[int]] = {receipt: []} if receipt else {}
    log_audit = LogAudit(sizes, watched)
    async for leaf in api.leaves(latest.size):
        log_audit.add(leaf)
    if log_audit.tree.size != latest.size:
        report.problem(f"the server gave {log_audit.tree.size} leaves for a tree of {latest.size}")
    report.problems.extend(log_audit.problems)

    for head in heads:
        check_head(head, log_audit, report, "signed head")
    await check_summary(api, latest, log_audit.at_size.get(latest.size), report)
    await check_saved(api, saved_heads, latest, log_audit, report)
    if receipt is not None:
        await check_receipt(api, latest, log_audit, watched[receipt], report)

    totals = log_audit.totals
    report.say(
        f"{latest.size} leaves, {len(heads)} signed heads"
        + (f", key {signer.name}" if signer else "")
    )
    report.say(
        f"recomputed: counted {totals.counted}, invalidated {totals.invalidated or 0}, "
        f"erased {totals.erased}, removed {totals.removed}"
    )
    return heads, signer


def check_head(head: Checkpoint, log_audit: LogAudit, report: Report, what: str) -> None:
    recomputed = log_audit.at_size.get(head.size)
    if recomputed is None:
        report.problem(f"{what} of size {head.size}: no such size in the log")
        return
    root, totals = recomputed
    if root != head.root:
        report.problem(f"{what} of size {head.size}: its root is not the leaves' root")
    if totals.counted != head.counted:
        report.problem(
            f"{what} of size {head.size}: says {head.counted} counted, the leaves give "
            f"{totals.counted}"
        )


async def check_summary(
    api: Api, latest: Checkpoint, recomputed: tuple[bytes, Totals] | None, report: Report
) -> None:
    status, summary = await api.log("summary")
    if status != 200 or recomputed is None:
        report.problem(f"no summary for the latest head (HTTP {status})")
        return
    if summary["tree_size"] != latest.size:
        return  # the log grew meanwhile: the next run checks it
    totals = recomputed[1]
    published = Totals(
        summary["counted"], summary["invalidated"], summary["erased"], summary["removed"]
    )
    if published != totals:
        report.problem(f"the summary says {published}, the leaves give {totals}")


async def check_saved(
    api: Api, saved: list[Checkpoint], latest: Checkpoint, log_audit: LogAudit, report: Report
) -> None:
    for head in saved:
        if head.size > latest.size:
            report.problem(f"a saved head of size {head.size} is beyond the log's {latest.size}")
            continue
        check_head(head, log_audit, report, "saved head")
        if head.size == latest.size:
            continue
        status, answer = await api.log("consistency", first=head.size, second=latest.size)
        proof = [base64.b64decode(h) for h in answer.get("proof", [])] if status == 200 else []
        if not merkle.verify_consistency(head.size, latest.size, head.root, latest.root, proof):
            report.problem(
                f"the server cannot prove its log extends the saved head of size {head.size}"
            )
    if saved:
        report.say(f"{len(saved)} saved heads checked against the log")


async def check_receipt(
    api: Api, latest: Checkpoint, log_audit: LogAudit, indexes: list[int], report: Report
) -> None:
    if not indexes:
        report.problem("the receipt's signature has no leaf in the log")
        return
    for index in indexes:
        status, answer = await api.log("inclusion", leaf=index, size=latest.size)
        proof = [base64.b64decode(h) for h in answer.get("proof", [])] if status == 200 else []
        status, page = await api.log("leaves", start=index, end=index + 1)
        leaf = base64.b64decode(page["leaves"][0]) if status == 200 else b""
        if not merkle.verify_inclusion(
            merkle.leaf_hash(leaf), index, latest.size, proof, latest.root
        ):
            report.problem(f"the receipt's leaf {index} is not proven in the latest head")
    report.say(f"receipt: leaves {indexes} of the log; inclusion proven in the latest head")


# -- witness co-signing --------------------------------------------------------------------


def cosign(head: Checkpoint, key_path: Path, name: str) -> str:
    """The head's note with a witness cosignature added (C2SP tlog-cosignature v1)."""
    try:
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise click.ClickException(
            f"{key_path}: not a PEM private key ({type(exc).__name__})"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise click.ClickException(f"{key_path}: the witness key must be Ed25519")
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    stamp = int(time.time())
    message = f"cosignature/v1\ntime {stamp}\n{head.body}".encode()
    line = base64.b64encode(
        note_key_id(name, b"\x04", public) + stamp.to_bytes(8, "big") + private.sign(message)
    ).decode()
    return f"{head.note}\u2014 {name} {line}\n"


# -- the command ---------------------------------------------------------------------------


@click.command()
@click.argument("target", metavar="URL-OR-SLUG")
@click.option(
    "--server",
    envvar="COUNTERSIGN_PUBLIC_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Where the API is, when given a slug [COUNTERSIGN_PUBLIC_URL].",
)
@click.option(
    "--heads",
    "heads_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Heads saved by earlier runs: checked against the log, then kept with the new ones.",
)
@click.option("--key", help="The log's public key (base64) to trust, instead of the served one.")
@click.option("--receipt", help="Also check this signature receipt's leaves and inclusion.")
@click.option(
    "--witness-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Co-sign the newest head, once checked, with this Ed25519 key (PEM), as a witness.",
)
@click.option("--witness-name", default="countersign-witness", show_default=True)
@click.option(
    "--cosigned",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the co-signed head (default: standard output).",
)
def verify(
    target: str,
    server: str,
    heads_file: Path | None,
    key: str | None,
    receipt: str | None,
    witness_key: Path | None,
    witness_name: str,
    cosigned: Path | None,
) -> None:
    """Recompute a petition's count from its public log; exit 1 on any discrepancy.

    Shares no code with the server beyond the Merkle hashing (RFC 9162).
    """
    base, slug = locate(target, server)
    commitment = None
    if receipt is not None:
        receipt_slug, commitment = commitment_of(receipt)
        if receipt_slug != slug:
            raise click.BadParameter("the receipt is for another petition", param_hint="--receipt")
    if key is not None:
        try:
            if len(base64.b64decode(key, validate=True)) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            raise click.BadParameter("an Ed25519 public key is 32 bytes, in base64") from None
    saved = load_saved(heads_file)
    log_name = f"{base}/v1/petitions/{slug}"
    saved_log = saved["logs"].get(log_name, {})
    report = Report()
    started = time.monotonic()

    async def go() -> tuple[list[Checkpoint], VerifierKey | None]:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await audit(Api(session, base, slug), saved_log, key, commitment, report)

    try:
        heads, signer = asyncio.run(go())
    except Unreachable as exc:
        click.echo(f"countersign verify: cannot read the log: {exc}", err=True)
        sys.exit(2)
    except Discrepancy as exc:
        report.problem(str(exc))
        heads, signer = [], None

    click.echo(f"petition {slug} at {base}")
    for line in report.lines:
        click.echo(f"  {line}")
    click.echo(f"  checked in {time.monotonic() - started:.1f}s")
    if report.problems:
        for problem in report.problems:
            click.echo(f"DISCREPANCY: {problem}")
        sys.exit(1)
    if heads_file is not None and heads and signer is not None:
        # The newest head of each run: the next run proves the log still extends each.
        kept = saved_log.get("heads", [])
        saved["logs"][log_name] = {
            "key_name": signer.name,
            "public_key": base64.b64encode(signer.public).decode(),
            "heads": kept if heads[-1].note in kept else [*kept, heads[-1].note],
        }
        store_saved(heads_file, saved)
    if witness_key is not None and heads:
        note = cosign(heads[-1], witness_key, witness_name)
        if cosigned is None:
            click.echo(note, nl=False)
        else:
            cosigned.write_text(note)
    click.echo("OK: every head and every total is what the leaves say")
