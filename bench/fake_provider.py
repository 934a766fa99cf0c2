"""The tests' fake Connectel in a process of its own: `python -m bench.fake_provider PORT TOKEN`."""

from __future__ import annotations

import sys

import uvicorn

from tests.fake_connectel import FakeConnectel

if __name__ == "__main__":
    port, token = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(
        FakeConnectel(token).app, host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
