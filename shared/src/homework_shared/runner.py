"""Serve a service's app with uvicorn: our JSON logging, no access-log duplicates, graceful shutdown on SIGTERM."""

from __future__ import annotations

import math
import signal

import uvicorn
from fastapi import FastAPI

from homework_shared.observability import configure_logging
from homework_shared.settings import ServiceSettings


def server_config(app: FastAPI, settings: ServiceSettings) -> uvicorn.Config:
    """The uvicorn configuration ``serve`` uses (separate so it can be checked without starting a server)."""
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        # None: uvicorn leaves logging alone, so its records reach our JSON handler on the root logger.
        log_config=None,
        log_level=settings.log_level.lower(),
        # The request middleware already logs each request as one JSON line.
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
        timeout_keep_alive=math.ceil(settings.http_keep_alive_s),
        # Beyond this many connections or requests at once, uvicorn answers 503 without reading the request.
        limit_concurrency=settings.http_limit_concurrency,
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run ``app`` until SIGTERM or SIGINT, then finish in-flight requests (up to ``shutdown_timeout_s``)."""
    configure_logging(settings)
    # uvicorn installs its own SIGTERM/SIGINT handlers (stop accepting, drain, run the lifespan's
    # shutdown) and, once done, re-raises the signal to the handler that was there before. A no-op
    # handler there makes a graceful stop exit with status 0 instead of "killed by SIGTERM" (143).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(server_config(app, settings)).run()
