"""Typed keys for what the application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from countersign.settings import Settings
from countersign.texts import TextCatalog
from petition_api.abuse import AbuseChecks
from petition_api.confirmation_token import ConfirmationTokens
from petition_api.counts import CountsRenderer
from petition_api.pages import Pages
from petition_api.petitions import PetitionDirectory
from petition_api.signing import Hasher, SignatureWriter

if TYPE_CHECKING:  # these modules' handlers import this one
    from petition_api.cors import OriginPolicy
    from petition_api.live import LiveHub
    from petition_api.partners import PartnerDirectory
    from petition_api.widget import WidgetAssets

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", Redis)
LAYOUT = web.AppKey("layout", KeyLayout)
HASHER = web.AppKey("hasher", Hasher)
PETITIONS = web.AppKey("petitions", PetitionDirectory)
WRITER = web.AppKey("writer", SignatureWriter)
COUNTS = web.AppKey("counts", CountsRenderer)
TEXTS = web.AppKey("texts", TextCatalog)
TOKENS = web.AppKey("tokens", ConfirmationTokens)
PAGES = web.AppKey("pages", Pages)
PARTNERS: web.AppKey[PartnerDirectory] = web.AppKey("partners")
ORIGINS: web.AppKey[OriginPolicy] = web.AppKey("origins")
LIVE: web.AppKey[LiveHub] = web.AppKey("live")
WIDGET: web.AppKey[WidgetAssets] = web.AppKey("widget")
ABUSE = web.AppKey("abuse", AbuseChecks)
