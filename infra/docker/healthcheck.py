#!/usr/bin/env python3
"""Container health check for the Whalli image; exit 0 when healthy, 1 otherwise.

    whalli-healthcheck [PATH]   the API in this container answers 200 on PATH (default /api/health)
    whalli-healthcheck --redis  the worker's broker answers PING (the worker has no HTTP port)

Docker keeps the output in ``docker inspect``, so it never prints URLs or exception messages
that could carry credentials: only the path, the status or the exception type.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check_http(path: str) -> int:
    port = os.environ.get("WHALLI_PORT", "3001")
    # No proxy: an HTTP(S)_PROXY in the container must not intercept a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=4) as response:
            if response.status == 200:
                return 0
            print(f"{path}: HTTP {response.status}", file=sys.stderr)
    except urllib.error.HTTPError as e:
        print(f"{path}: HTTP {e.code}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as e:
        print(f"{path}: {type(e).__name__}", file=sys.stderr)
    return 1


def check_redis() -> int:
    url = os.environ.get("WHALLI_REDIS_URL")
    if not url:
        print("WHALLI_REDIS_URL is not set", file=sys.stderr)
        return 1
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=4, socket_connect_timeout=4)
        client.ping()
        client.close()
    except Exception as e:  # any failure means unhealthy; the type is enough to diagnose
        print(f"redis: {type(e).__name__}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--redis"]:
        return check_redis()
    return check_http(argv[1] if len(argv) > 1 else "/api/health")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
