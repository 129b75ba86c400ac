"""Typed keys for what the application holds (aiohttp ``AppKey``).

Only the classes of what is held are imported here, never a module of handlers: the
handlers import this module."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from counter_worker.counts import KeyLayout
from countersign_core.connections import RedisClient
from countersign_core.settings import Settings
from countersign_core.texts import TextCatalog
from countersign_domain.confirmation_tokens import ConfirmationTokens
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.origins import OriginPolicy
from countersign_domain.partners import PartnerDirectory
from countersign_domain.petitions import PetitionDirectory
from countersign_domain.signatures import Hasher, SignatureWriter
from petition_api.abuse import AbuseChecks
from petition_api.cards import CardRenderer
from petition_api.counts import CountsRenderer
from petition_api.live_hub import LiveHub
from petition_api.pages import Pages
from petition_api.ratelimit import RateLimiter
from petition_api.widget_assets import WidgetAssets

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
LAYOUT = web.AppKey("layout", KeyLayout)
HASHER = web.AppKey("hasher", Hasher)
IP_KEYS = web.AppKey("ip_keys", DailyIpKeys)
PETITIONS = web.AppKey("petitions", PetitionDirectory)
WRITER = web.AppKey("writer", SignatureWriter)
COUNTS = web.AppKey("counts", CountsRenderer)
TEXTS = web.AppKey("texts", TextCatalog)
TOKENS = web.AppKey("tokens", ConfirmationTokens)
PAGES = web.AppKey("pages", Pages)
PARTNERS = web.AppKey("partners", PartnerDirectory)
ORIGINS = web.AppKey("origins", OriginPolicy)
LIVE = web.AppKey("live", LiveHub)
WIDGET = web.AppKey("widget", WidgetAssets)
ABUSE = web.AppKey("abuse", AbuseChecks)
LIMITER = web.AppKey("limiter", RateLimiter)
CARDS = web.AppKey("cards", CardRenderer)
