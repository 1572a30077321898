"""Typed keys for everything the application holds; the one place to see the app's state."""

from __future__ import annotations

from aiohttp import web

from yinzi.declare import Endpoints
from yinzi.doctor import QuickChecks
from yinzi.fetch import AddressPolicy, Fetcher
from yinzi.links import LinkAnalyzer
from yinzi.queue import JobQueue
from yinzi.ratelimit import RateLimiter
from yinzi.service import OrderService
from yinzi.settings import Settings
from yinzi.signing import Signer
from yinzi.storage import Storage
from yinzi.store import Database
from yinzi.uploads import UploadDesk

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
QUEUE = web.AppKey("queue", JobQueue)
SIGNER = web.AppKey("signer", Signer)
POLICY = web.AppKey("policy", AddressPolicy)
FETCHER = web.AppKey("fetcher", Fetcher)
LINKS = web.AppKey("links", LinkAnalyzer)
LIMITER = web.AppKey("limiter", RateLimiter)
SERVICE = web.AppKey("service", OrderService)
UPLOADS = web.AppKey("uploads", UploadDesk)
# Every API the app serves (the native one first), each a table of declared endpoints: /openapi.json is made
# from these.
ENDPOINTS = web.AppKey("endpoints", tuple[Endpoints, ...])
STORAGE = web.AppKey("storage", Storage)
QUICK_CHECKS = web.AppKey("quick_checks", QuickChecks)  # what /healthz reports besides the database
