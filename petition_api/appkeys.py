"""Typed keys for what the application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from countersign_core.settings import Settings
from countersign_core.texts import TextCatalog
from countersign_domain.confirmation_tokens import ConfirmationTokens
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.petitions import PetitionDirectory
from countersign_domain.signatures import Hasher, SignatureWriter
from petition_api.abuse import AbuseChecks
from petition_api.counts import CountsRenderer
from petition_api.pages import Pages

if TYPE_CHECKING:  # these modules' handlers import this one
    from countersign_domain.origins import OriginPolicy
    from countersign_domain.partners import PartnerDirectory
    from petition_api.live import LiveHub
    from petition_api.widget import WidgetAssets

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", Redis)
LAYOUT = web.AppKey("layout", KeyLayout)
HASHER = web.AppKey("hasher", Hasher)
IP_KEYS = web.AppKey("ip_keys", DailyIpKeys)
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
