"""Typed keys for what the application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from countersign.settings import Settings
from petition_api.abuse import AbuseChecks
from petition_api.counts import CountsRenderer
from petition_api.petitions import PetitionDirectory
from petition_api.signing import Hasher, SignatureWriter

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", Redis)
LAYOUT = web.AppKey("layout", KeyLayout)
HASHER = web.AppKey("hasher", Hasher)
PETITIONS = web.AppKey("petitions", PetitionDirectory)
WRITER = web.AppKey("writer", SignatureWriter)
COUNTS = web.AppKey("counts", CountsRenderer)
ABUSE = web.AppKey("abuse", AbuseChecks)
