"""`python -m service.healthcheck`: the container's HEALTHCHECK, probing /health/ready where ae-serve listens.

It reads the same AE_HOST and AE_PORT as `ae-serve`, so a container started with another port (host
networking, for instance) is probed where it listens; the HEALTHCHECK once probed port 8000 whatever
AE_PORT said and reported such a container unhealthy forever. Exit status 0: ready, 1: anything else.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

# Addresses meaning "every interface": the probe goes to the loopback address of the same family.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def probe_url(environ: Mapping[str, str] | None = None) -> str:
    """The readiness URL of the server the AE_HOST and AE_PORT in `environ` (the process's) describe."""
    environ = os.environ if environ is None else environ
    host = environ.get("AE_HOST", "127.0.0.1").strip()
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address in a URL
    port = int(environ.get("AE_PORT", "8000"))
    return f"http://{host}:{port}/health/ready"


def main() -> int:
    """0 when /health/ready answers 200 within 2 s, 1 otherwise."""
    try:
        with urllib.request.urlopen(probe_url(), timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
