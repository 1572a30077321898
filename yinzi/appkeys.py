"""Typed keys for everything the application holds; the one place to see the app's state."""

from __future__ import annotations

from aiohttp import web

from yinzi.fetch import AddressPolicy, Fetcher
from yinzi.links import LinkAnalyzer
from yinzi.queue import JobQueue
from yinzi.ratelimit import RateLimiter
from yinzi.settings import Settings
from yinzi.signing import Signer
from yinzi.store import Database

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
QUEUE = web.AppKey("queue", JobQueue)
SIGNER = web.AppKey("signer", Signer)
POLICY = web.AppKey("policy", AddressPolicy)
FETCHER = web.AppKey("fetcher", Fetcher)
LINKS = web.AppKey("links", LinkAnalyzer)
LIMITER = web.AppKey("limiter", RateLimiter)
