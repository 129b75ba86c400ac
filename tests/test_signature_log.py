"""The signature log end to end: leaves for every change to what counts, signed heads,
the public endpoints, receipts, and `countersign verify` (a real process reading the
API over HTTP) catching a rewritten history and a head that lies about its total."""

from __future__ import annotations

import ast
import asyncio
import base64
import dataclasses
import hashlib
import html
import json
import re
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from counter_worker import signature_log as worker_log
from counter_worker.keys import KeyLayout
from countersign_core.settings import Settings, load_settings
from countersign_domain import moderation
from countersign_domain.confirmation_tokens import ConfirmationRef, ConfirmationTokens
from countersign_domain.signature_log import merkle
from countersign_domain.signature_log.appender import LogAppender
from countersign_domain.signature_log.heads import LogKey, SigningKeyError, TreeHead, load_log_key
from countersign_domain.signature_log.leaves import Kind, Leaf, commitment
from countersign_domain.signature_log.receipts import Receipt
from petition_api.app import create_app
from tests.support.counts import assert_converges
from tests.support.factories import SLUG, StaffTokens, add_signatures, hasher
from tests.support.http import AiohttpClient, Client, bearer
from tests.support.processes import SpawnWorker, countersign
from tests.support.values import TEST_SECRET
from tests.support.waiting import eventually

LOG = f"/v1/petitions/{SLUG}/log"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def log_key() -> LogKey:
    return LogKey(Ed25519PrivateKey.generate())


@pytest.fixture
async def appender(pool: asyncpg.Pool, log_key: LogKey) -> LogAppender:
    """The worker's appender, in process, driven in burst mode (``await appender.drain()``)."""
    appender = LogAppender(pool, log_key, batch_size=40)
    await appender.register_key()
    return appender


async def sign(client: Client, email: str, country: str = "SY") -> None:
    response = await client.post(
        f"/v1/petitions/{SLUG}/signatures",
        json={"name": "Amal Haddad", "email": email, "country": country},
    )
    assert response.status == 201, await response.text()


async def get_json(client: Client, path: str, status: int = 200, **query: Any) -> Any:
    response = await client.get(path, params={k: str(v) for k, v in query.items()})
    assert response.status == status, await response.text()
    return await response.json()


async def receipt_of(pool: asyncpg.Pool, email: str) -> Receipt:
    row = await pool.fetchrow("SELECT id, receipt_secret FROM signatures WHERE email = $1", email)
    return Receipt(SLUG, row["id"], row["receipt_secret"])


async def run_verify(client: Client, *args: str) -> tuple[int, str]:
    """``countersign verify`` as a journalist runs it: its own process, over HTTP."""
    base = str(client.make_url("")).rstrip("/")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "countersign",
        "verify",
        f"{base}/v1/petitions/{SLUG}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=REPO,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def invalidate_source(
    db: asyncpg.Pool | asyncpg.Connection, petition_id: int, source: str, reason: str = "bots"
) -> moderation.Invalidation:
    """Staff invalidating every signature a partner brought."""
    return await moderation.apply_invalidation(
        db,
        actor="test",
        petition_id=petition_id,
        criteria=moderation.Criteria(source=source),
        reason=reason,
    )


async def truth(pool: asyncpg.Pool, petition_id: int) -> int:
    counted: int = await pool.fetchval(
        "SELECT count(*) FROM signatures WHERE petition_id = $1 AND counted", petition_id
    )
    return counted


# -- leaves, heads and totals ---------------------------------------------------------------


async def test_every_change_to_what_counts_is_a_leaf_and_the_totals_add_up(
    client: Client, pool: asyncpg.Pool, petition_id: int, appender: LogAppender, log_key: LogKey
) -> None:
    await get_json(client, f"{LOG}/head", 404)  # nothing counted yet
    await add_signatures(pool, petition_id, 30, sources=("partner-a", "newsroom"))
    for n in range(4):
        await sign(client, f"erasable{n}@example.org")
    async with pool.acquire() as conn:
        await invalidate_source(conn, petition_id, "newsroom", "a bot farm")
        undone = await invalidate_source(conn, petition_id, "partner-a")
        await moderation.undo_invalidation(conn, actor="test", invalidation_id=undone.id)
        for n in range(2):
            await moderation.erase_address(conn, hasher, f"erasable{n}@example.org", actor="test")
    await pool.execute("DELETE FROM signatures WHERE email = 'erasable2@example.org'")
    assert await appender.drain() > 0

    counted = await truth(pool, petition_id)
    assert counted == 30 - 15 + 4 - 2 - 1
    summary = await get_json(client, f"{LOG}/summary")
    assert summary == {
        "tree_size": 30 + 4 + 15 + 15 + 15 + 2 + 1,
        "counted": counted,
        "invalidated": {"source": 15},  # how they were picked, never the free-text reason
        "erased": 2,
        "removed": 1,
        "head": summary["head"],
    }
    head = await get_json(client, f"{LOG}/head")
    assert head == summary["head"]
    assert head["counted"] == counted
    assert head["checkpoint"].startswith(f"{log_key.origin(SLUG)}\n{summary['tree_size']}\n")
    keys = await get_json(client, "/v1/log/public-key")
    assert keys["keys"] == [
        {
            "name": log_key.name,
            "algorithm": "Ed25519",
            "public_key": base64.b64encode(log_key.public).decode(),
            "vkey": log_key.vkey,
        }
    ]
    # No leaf carries anything personal: each is 43 bytes plus a reason class.
    page = await get_json(client, f"{LOG}/leaves", start=0, end=summary["tree_size"])
    assert page["end"] == summary["tree_size"]
    leaves = [Leaf.decode(base64.b64decode(leaf)) for leaf in page["leaves"]]
    assert {len(base64.b64decode(leaf)) for leaf in page["leaves"]} <= {43, 49}
    assert {leaf.reason_class for leaf in leaves} == {"", "source"}
    assert all(leaf.hour % 3600 == 0 for leaf in leaves)

    code, output = await run_verify(client)
    assert code == 0, output
    assert f"counted {counted}, invalidated {{'source': 15}}, erased 2, removed 1" in output


async def test_heads_are_signed_and_every_page_and_proof_is_served(
    client: Client, pool: asyncpg.Pool, petition_id: int, appender: LogAppender, log_key: LogKey
) -> None:
    await add_signatures(pool, petition_id, 100)
    await appender.drain()  # batches of 40: heads at 40, 80, 100
    page = await get_json(client, f"{LOG}/heads", limit=2)
    assert [h["tree_size"] for h in page["heads"]] == [40, 80]
    rest = await get_json(client, f"{LOG}/heads", after=page["next"], limit=2)
    assert [h["tree_size"] for h in rest["heads"]] == [100]
    assert rest["next"] is None
    heads = [*page["heads"], *rest["heads"]]
    hashes = [
        merkle.leaf_hash(base64.b64decode(leaf))
        for leaf in (await get_json(client, f"{LOG}/leaves", start=0, end=100))["leaves"]
    ]
    for head in heads:
        tree = merkle.CompactTree()
        for leaf in hashes[: head["tree_size"]]:
            tree.append(leaf)
        assert base64.b64decode(head["root_hash"]) == tree.root()
    roots = {h["tree_size"]: base64.b64decode(h["root_hash"]) for h in heads}
    proof = await get_json(client, f"{LOG}/consistency", first=40, second=100)
    assert merkle.verify_consistency(
        40, 100, roots[40], roots[100], [base64.b64decode(h) for h in proof["proof"]]
    )
    proof = await get_json(client, f"{LOG}/inclusion", leaf=57, size=80)
    assert merkle.verify_inclusion(
        hashes[57], 57, 80, [base64.b64decode(h) for h in proof["proof"]], roots[80]
    )
    # A page past the latest head is cut there (and may still grow: not cached for good).
    response = await client.get(f"{LOG}/leaves", params={"start": "90", "end": "200"})
    assert (await response.json())["end"] == 100
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("leaves", {"start": "-1", "end": "5"}, 422, "validation_failed"),
        ("leaves", {"start": "abc", "end": "5"}, 422, "validation_failed"),
        ("leaves", {"start": "3", "end": "3"}, 404, "outside_log"),
        ("leaves", {"start": "0"}, 422, "validation_failed"),
        ("leaves", {"start": "0", "end": "5", "extra": "1"}, 422, "validation_failed"),
        ("leaves", {"start": "99999999999999999999999", "end": "5"}, 422, "validation_failed"),
        ("leaves", {"start": "10", "end": "20"}, 404, "outside_log"),
        ("consistency", {"first": "5", "second": "3"}, 404, "outside_log"),
        ("consistency", {"first": "0", "second": "3"}, 422, "validation_failed"),
        ("consistency", {"first": "3", "second": "11"}, 404, "outside_log"),
        ("inclusion", {"leaf": "5", "size": "5"}, 404, "outside_log"),
        ("inclusion", {"leaf": "1.5", "size": "5"}, 422, "validation_failed"),
        ("inclusion", {"leaf": "0", "size": "11"}, 404, "outside_log"),
        ("heads", {"limit": "0"}, 422, "validation_failed"),
        ("heads", {"after": "-3"}, 422, "validation_failed"),
    ],
)
async def test_bad_queries_get_a_clear_4xx(
    client: Client,
    pool: asyncpg.Pool,
    petition_id: int,
    appender: LogAppender,
    path: str,
    query: dict[str, str],
    status: int,
    code: str,
) -> None:
    await add_signatures(pool, petition_id, 10)
    await appender.drain()
    response = await client.get(f"{LOG}/{path}", params=query)
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["code"] == code


async def test_unknown_petitions_empty_logs_and_bad_receipts(
    client: Client, pool: asyncpg.Pool
) -> None:
    for path in ("head", "summary", "leaves?start=0&end=1", "inclusion?leaf=0&size=1"):
        response = await client.get(f"{LOG}/{path}")
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "log_empty"
        response = await client.get(f"/v1/petitions/no-such-one/log/{path}")
        assert (await response.json())["error"]["code"] == "petition_not_found"
    for code, status, error in [
        ("refer-syria-to-icc.1.short", 400, "invalid_receipt"),
        (f"refer-syria-to-icc.99999999999999999999.{'A' * 22}", 400, "invalid_receipt"),
        (f"refer-syria-to-icc.1.{'A' * 22}", 404, "receipt_not_found"),
    ]:
        response = await client.get(f"/v1/receipts/{code}")
        assert response.status == status
        assert (await response.json())["error"]["code"] == error


# -- receipts -----------------------------------------------------------------------------


async def test_a_receipt_proves_inclusion_and_erasure_closes_it_for_good(
    client: Client, pool: asyncpg.Pool, petition_id: int, appender: LogAppender
) -> None:
    await add_signatures(pool, petition_id, 20)
    await sign(client, "amal@example.org")
    await add_signatures(pool, petition_id, 20)
    receipt = await receipt_of(pool, "amal@example.org")
    assert len(receipt.code) < 60

    # Before the worker appends it, the receipt opens but shows no leaf yet.
    early = await get_json(client, f"/v1/receipts/{receipt.code}")
    assert early["leaves"] == []
    assert not early["counts"]
    await appender.drain()

    checked = await get_json(client, f"/v1/receipts/{receipt.code}")
    assert checked["counts"] is True
    [leaf] = checked["leaves"]
    assert (leaf["index"], leaf["kind"]) == (20, "counted")
    [proof] = checked["inclusion"]
    head = checked["head"]
    # Checked here from the receipt alone: the leaf carries the commitment it opens.
    raw = base64.b64decode((await get_json(client, f"{LOG}/leaves", start=20, end=21))["leaves"][0])
    assert Leaf.decode(raw).commitment == commitment(receipt.signature_id, receipt.secret)
    assert merkle.verify_inclusion(
        merkle.leaf_hash(raw),
        20,
        head["tree_size"],
        [base64.b64decode(h) for h in proof["proof"]],
        base64.b64decode(head["root_hash"]),
    )
    code, output = await run_verify(client, "--receipt", receipt.code)
    assert code == 0, output
    assert "receipt: leaves [20] of the log" in output

    # Nobody else can find it: a receipt with another secret opens nothing.
    forged = Receipt(SLUG, receipt.signature_id, bytes(16))
    await get_json(client, f"/v1/receipts/{forged.code}", 404)

    # Erased: the server can no longer open it; the leaf stays, its erasure is a leaf too,
    # and the count stays verifiable.
    await moderation.erase_address(pool, hasher, "amal@example.org", actor="test")
    await appender.drain()
    gone = await get_json(client, f"/v1/receipts/{receipt.code}", 404)
    assert gone["error"]["code"] == "receipt_not_found"
    page = await get_json(client, f"{LOG}/leaves", start=0, end=42)
    assert base64.b64decode(page["leaves"][20]) == raw
    erasure = Leaf.decode(base64.b64decode(page["leaves"][41]))
    assert (erasure.kind, erasure.commitment) == (Kind.ERASED, Leaf.decode(raw).commitment)
    assert (await get_json(client, f"{LOG}/summary"))["counted"] == 40
    code, output = await run_verify(client)
    assert code == 0, output
    assert "counted 40, invalidated 0, erased 1" in output


# -- the verifier catches what a dishonest server does ---------------------------------------


async def rewrite_history(
    pool: asyncpg.Pool, petition_id: int, appender: LogAppender, change_at: int
) -> None:
    """What a server with the key could do: rebuild the log with one leaf replaced and
    sign fresh heads over it (the append-only triggers switched off for the session)."""
    rows = await pool.fetch(
        "SELECT leaf FROM log_leaves WHERE petition_id = $1 ORDER BY leaf_index", petition_id
    )
    leaves = [Leaf.decode(row["leaf"]) for row in rows]
    leaves[change_at] = Leaf(leaves[change_at].kind, leaves[change_at].hour, bytes(32))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for table in ("log_heads", "log_nodes", "log_leaves", "log_state"):
            await conn.execute(f"DELETE FROM {table} WHERE petition_id = $1", petition_id)  # noqa: S608
        await conn.executemany(
            """INSERT INTO log_events (petition_id, signature_id, kind, commitment, at)
               VALUES ($1, 0, $2, $3, to_timestamp($4))""",
            [(petition_id, leaf.kind.name.lower(), leaf.commitment, leaf.hour) for leaf in leaves],
        )
    await appender.drain()


async def test_a_rewritten_history_is_caught_against_saved_heads(
    client: Client, pool: asyncpg.Pool, petition_id: int, appender: LogAppender, tmp_path: Path
) -> None:
    saved = tmp_path / "heads.json"
    await add_signatures(pool, petition_id, 50)
    await appender.drain()
    code, output = await run_verify(client, "--heads", str(saved))
    assert code == 0, output
    [memory] = json.loads(saved.read_text())["logs"].values()
    assert len(memory["heads"]) == 1

    await rewrite_history(pool, petition_id, appender, change_at=7)
    await add_signatures(pool, petition_id, 10)
    await appender.drain()
    # On its own the rewritten log is consistent: only a memory of earlier heads shows it.
    code, output = await run_verify(client)
    assert code == 0, output
    code, output = await run_verify(client, "--heads", str(saved))
    assert code == 1, output
    assert "DISCREPANCY: saved head of size 50: its root is not the leaves' root" in output
    assert "the server cannot prove its log extends the saved head of size 50" in output


async def test_a_head_whose_total_does_not_match_the_leaves_is_caught(
    client: Client, pool: asyncpg.Pool, petition_id: int, appender: LogAppender, log_key: LogKey
) -> None:
    await add_signatures(pool, petition_id, 30)
    await appender.drain()
    await add_signatures(pool, petition_id, 30)
    await appender.drain()
    rows = await pool.fetch(
        "SELECT leaf FROM log_leaves WHERE petition_id = $1 AND leaf_index < 45 "
        "ORDER BY leaf_index",
        petition_id,
    )
    tree = merkle.CompactTree()
    for row in rows:
        tree.append(merkle.leaf_hash(row["leaf"]))
    # A correctly signed head with the right root for 45 leaves, claiming 100 more.
    inflated = TreeHead(log_key.origin(SLUG), 45, tree.root(), 1_700_000_000, 145)
    await pool.execute(
        """INSERT INTO log_heads (petition_id, tree_size, root_hash, signed_at, counted,
                                  invalidated, erased, removed, key_name, note)
           VALUES ($1, 45, $2, now(), 145, '{}', 0, 0, $3, $4)""",
        petition_id,
        inflated.root_hash,
        log_key.name,
        log_key.sign_note(inflated.checkpoint()),
    )
    code, output = await run_verify(client)
    assert code == 1, output
    assert "signed head of size 45: says 145 counted, the leaves give 45" in output


async def test_a_head_signed_by_another_key_is_caught(
    client: Client, pool: asyncpg.Pool, petition_id: int, appender: LogAppender
) -> None:
    await add_signatures(pool, petition_id, 10)
    await appender.drain()
    impostor = LogKey(Ed25519PrivateKey.generate())
    await LogAppender(pool, impostor).drain()  # nothing waits: signs nothing
    await add_signatures(pool, petition_id, 5)
    await LogAppender(pool, impostor).drain()
    code, output = await run_verify(client)
    assert code == 1, output
    assert "not every head is signed by the log's key" in output


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (``from a import b`` counts as ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_verifier_shares_only_the_hashing_module_with_the_server() -> None:
    server = ("countersign_core", "countersign_domain", "petition_api", "counter_worker")
    shared = set()
    for module in ("verify", "verifier"):
        shared |= {
            name
            for name in imports_of(REPO / "countersign" / "cli" / f"{module}.py")
            if name.startswith(server)
        }
    assert shared == {"countersign_domain.signature_log.merkle"}
    # The hashing module imports nothing of the project, and its package nothing at all.
    package = REPO / "countersign_domain" / "signature_log"
    assert not [name for name in imports_of(package / "merkle.py") if name.startswith(server)]
    assert not imports_of(package / "__init__.py")


def test_the_key_is_read_from_pem_or_base64() -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    nowhere = Path("/nonexistent")
    from_pem = load_log_key(pem, nowhere)
    assert load_log_key(base64.b64encode(raw).decode(), nowhere).public == from_pem.public
    for wrong in ("not a key", base64.b64encode(b"short").decode()):
        with pytest.raises(SigningKeyError):
            load_log_key(wrong, nowhere)


def test_without_a_key_one_is_made_once_in_the_data_folder(tmp_path: Path) -> None:
    first = load_log_key(None, tmp_path)
    assert load_log_key(None, tmp_path).public == first.public
    assert (tmp_path / "log-signing-key.pem").stat().st_mode & 0o077 == 0


# -- real workers, killed mid-append ------------------------------------------------------


async def test_the_log_survives_a_worker_killed_mid_append_exactly(
    client: Client,
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    petition_id: int,
    spawn: SpawnWorker,
) -> None:
    seed = base64.b64encode(bytes(range(32))).decode()
    victim = spawn(stop_at="log_before_commit", COUNTERSIGN_LOG_SIGNING_KEY=seed)
    await add_signatures(pool, petition_id, 300)
    await victim.wait_stopped()
    # Frozen inside its append transaction, after writing the leaves, before committing.
    assert await pool.fetchval("SELECT count(*) FROM log_leaves") == 0
    assert await pool.fetchval("SELECT count(*) FROM log_events") == 300
    victim.kill()

    await add_signatures(pool, petition_id, 200)
    invalidation = await invalidate_source(pool, petition_id, "newsroom")
    # Two workers share the appending while signing goes on.
    spawn(COUNTERSIGN_LOG_SIGNING_KEY=seed)
    spawn(COUNTERSIGN_LOG_SIGNING_KEY=seed)
    for _ in range(20):
        await add_signatures(pool, petition_id, 10)
        await asyncio.sleep(0.02)

    async def caught_up() -> bool:
        waiting = await pool.fetchval("SELECT count(*) FROM log_events")
        head = await pool.fetchval(
            "SELECT counted FROM log_heads WHERE petition_id = $1 ORDER BY tree_size DESC LIMIT 1",
            petition_id,
        )
        return bool(waiting == 0 and head == await truth(pool, petition_id))

    await eventually(caught_up, timeout=60)
    counters = await assert_converges(pool, redis, layout, petition_id)
    leaves, last = await pool.fetchrow(
        "SELECT count(*), max(leaf_index) FROM log_leaves WHERE petition_id = $1", petition_id
    )
    # Every change exactly once: no leaf lost, none doubled, no index skipped.
    assert leaves == last + 1 == 300 + 200 + invalidation.row_count + 200
    summary = await get_json(client, f"{LOG}/summary")
    assert summary["counted"] == counters.total == 700 - invalidation.row_count
    assert summary["invalidated"] == {"source": invalidation.row_count}
    code, output = await run_verify(client)
    assert code == 0, output


async def test_confirming_shows_the_receipt_which_opens_once_the_leaf_is_appended(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    appender: LogAppender,
) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.post(
        "/v1/petitions/free-the-detainees/signatures",
        json={"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"},
    )
    assert response.status == 202
    signature_id = await pool.fetchval("SELECT id FROM signatures")
    token = ConfirmationTokens(TEST_SECRET, max_age_days=7).make(
        ConfirmationRef(signature_id, confirming_petition_id)
    )
    # Not before confirming: the link's page holds no receipt.
    assert "/v1/receipts/" not in await (await client.get(f"/confirm/{token}")).text()

    page = await (await client.post(f"/confirm/{token}")).text()
    [code] = re.findall(r'href="/v1/receipts/([^"]+)"', page)
    assert code.startswith(f"free-the-detainees.{signature_id}.")
    await appender.drain()
    checked = await get_json(client, f"/v1/receipts/{code}")
    assert checked["counts"] is True
    assert [leaf["kind"] for leaf in checked["leaves"]] == ["counted"]
    # The confirmed page shows it again to whoever holds the link, and nobody else.
    assert code in await (await client.get(f"/confirm/{token}")).text()


async def test_the_delivery_page_prints_the_ledger_the_final_head_and_the_key(
    client: Client,
    staff: StaffTokens,
    pool: asyncpg.Pool,
    petition_id: int,
    appender: LogAppender,
    log_key: LogKey,
) -> None:
    delivery = f"/v1/admin/petitions/{SLUG}/delivery"
    page = await (await client.get(delivery, headers=bearer(staff.exporter))).text()
    assert "A count anyone can verify" not in page  # nothing counted, nothing signed yet
    await add_signatures(pool, petition_id, 12, sources=("partner-a", "newsroom"))
    await invalidate_source(pool, petition_id, "newsroom")
    await appender.drain()
    page = await (await client.get(delivery, headers=bearer(staff.exporter))).text()
    head = await get_json(client, f"{LOG}/head")
    assert "A count anyone can verify" in page
    assert re.search(r'Counted, by the log</td><td class="count">6<', page)
    assert re.search(r'Invalidated as fraudulent \(source\)</td><td class="count">6<', page)
    assert html.escape(head["checkpoint"]) in page
    assert f"{log_key.name}: {base64.b64encode(log_key.public).decode()}" in page


async def test_the_log_tables_refuse_to_be_rewritten(
    pool: asyncpg.Pool, petition_id: int, appender: LogAppender
) -> None:
    await add_signatures(pool, petition_id, 3)
    await appender.drain()
    for statement in (
        "UPDATE log_leaves SET leaf = '\\x00'",
        "DELETE FROM log_nodes",
        "DELETE FROM log_heads",
        "TRUNCATE log_leaves CASCADE",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(statement)
    assert await pool.fetchval("SELECT count(*) FROM log_leaves") == 3


async def test_the_verifier_cosigns_the_head_it_checked_as_a_witness(
    client: Client, pool: asyncpg.Pool, petition_id: int, appender: LogAppender, tmp_path: Path
) -> None:
    await add_signatures(pool, petition_id, 5)
    await appender.drain()
    witness = Ed25519PrivateKey.generate()
    key_file = tmp_path / "witness.pem"
    key_file.write_bytes(
        witness.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cosigned = tmp_path / "cosigned.txt"
    code, output = await run_verify(
        client,
        "--witness-key",
        str(key_file),
        "--witness-name",
        "example.org/witness",
        "--cosigned",
        str(cosigned),
    )
    assert code == 0, output
    head = (await get_json(client, f"{LOG}/head"))["checkpoint"]
    note = cosigned.read_text()
    assert note.startswith(head)
    # The C2SP tlog-cosignature v1 line, checked as any reader would.
    name, signature = note[len(head) :].removeprefix("\u2014 ").split()
    raw = base64.b64decode(signature)
    public = witness.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    key_id = hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
    assert (name, raw[:4]) == ("example.org/witness", key_id)
    body = head.partition("\n\n")[0] + "\n"
    stamp = int.from_bytes(raw[4:12], "big")
    witness.public_key().verify(raw[12:], f"cosignature/v1\ntime {stamp}\n{body}".encode())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"COUNTERSIGN_LOG_SIGNING_KEY": "garbage"},
            "the log signing key is neither PEM nor base64",
        ),
        (
            {"COUNTERSIGN_LOG_SIGNING_KEY": "x", "COUNTERSIGN_LOG_SIGNING_KEY_FILE": "/etc/hosts"},
            "not both",
        ),
        ({"COUNTERSIGN_LOG_SIGNING_KEY_FILE": "/nonexistent"}, 'LOG_SIGNING_KEY_FILE" invalid'),
    ],
)
def test_a_bad_log_signing_key_stops_the_worker_with_one_line(
    env: dict[str, str], message: str
) -> None:
    servers = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x"}
    result = countersign("worker", env={**servers, **env})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "verify" in countersign("--help").stdout
    assert "URL-OR-SLUG" in countersign("verify", "--help").stdout


def test_the_key_file_setting_and_the_off_switch(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(base64.b64encode(bytes(32)).decode())
    monkeypatch.setenv("COUNTERSIGN_LOG_SIGNING_KEY_FILE", str(key_file))
    loaded = load_settings()
    assert loaded.worker.log_signing_key == key_file.read_text()
    assert (key := worker_log.log_key(loaded)) is not None
    assert key.public == LogKey(Ed25519PrivateKey.from_private_bytes(bytes(32))).public

    async def work(_stopping: asyncio.Event) -> None:
        return None

    off = dataclasses.replace(
        settings, worker=dataclasses.replace(settings.worker, signature_log=False)
    )
    assert worker_log.log_key(off) is None
    assert worker_log.with_signature_log(work, None, 1.0) is work
