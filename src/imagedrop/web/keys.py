"""Typed application keys: how handlers find the resources the app factory opened."""

from __future__ import annotations

from concurrent.futures import Executor

from aiohttp import web

from imagedrop.config import Settings
from imagedrop.ledger import Ledger
from imagedrop.runtime import Runtime
from imagedrop.storage import ObjectStore

SETTINGS = web.AppKey("settings", Settings)
LEDGER = web.AppKey("ledger", Ledger)
STORAGE = web.AppKey("storage", ObjectStore)
EXECUTOR = web.AppKey("executor", Executor)
RUNTIME = web.AppKey("runtime", Runtime)
SIGNING_KEY = web.AppKey("signing_key", bytes)
