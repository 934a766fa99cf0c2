"""structlog set-up: one JSON object per line on stdout (or a console rendering)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(log_format: str, stream: TextIO = sys.stdout) -> None:
    """Long-running processes log to stdout for pipelines; one-shot commands pass stderr
    so that their own output stays parseable."""
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if log_format == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
