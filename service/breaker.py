"""A per-account circuit breaker for provider requests.

After `threshold` requests in a row fail in a way that shows the provider is down
(no connection, 5xx, 429), the account's circuit opens for `cooldown` seconds: its
messages are not sent but rescheduled or failed over, so an outage costs the
provider no traffic and us no timeouts. Requests already in flight when it opens
finish; none start. After the cooldown the circuit is half open: one request, the
probe, goes alone, and its answer closes the circuit or its failure opens it again.

State is per process, like the rate limits: each dispatcher learns for itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

_log = structlog.get_logger("smsgw.breaker")


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    opened_at: float = 0.0


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown: float) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._circuits: dict[str, _Circuit] = {}

    def open_until(self, account: str, now: float | None = None) -> float | None:
        """When the account may be tried again, while its circuit is open; else None."""
        circuit = self._circuits.get(account)
        if circuit is None or circuit.failures < self._threshold:
            return None
        until = circuit.opened_at + self._cooldown
        return until if (time.time() if now is None else now) < until else None

    def half_open(self, account: str, now: float | None = None) -> bool:
        """True when the cooldown is over and the next request is the probe."""
        circuit = self._circuits.get(account)
        if circuit is None or circuit.failures < self._threshold:
            return False
        return self.open_until(account, now) is None

    def failed(self, account: str, now: float | None = None) -> None:
        circuit = self._circuits.setdefault(account, _Circuit())
        circuit.failures += 1
        if circuit.failures >= self._threshold:
            circuit.opened_at = time.time() if now is None else now
            if circuit.failures == self._threshold:
                _log.warning("circuit.opened", account=account, failures=circuit.failures)

    def answered(self, account: str) -> None:
        circuit = self._circuits.pop(account, None)
        if circuit is not None and circuit.failures >= self._threshold:
            _log.info("circuit.closed", account=account)
