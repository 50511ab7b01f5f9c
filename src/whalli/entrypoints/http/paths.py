"""The request's path as the app's routes know it, whatever root path it is served under."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def routed_path(scope: Mapping[str, Any]) -> str:
    """``path`` without the app's ``root_path``, as Litestar's router matches it.

    Served under a root path (``uvicorn --root-path /whalli``, a proxy that mounts the app
    below a prefix), an ASGI server puts the root path in front of ``path`` (ASGI's HTTP scope;
    some servers leave it out): every check of a path against a route's own must drop it first,
    as the router does, or the request is taken for another route's.
    """
    path: str = scope["path"]
    root = scope.get("root_path")
    # Once Litestar's router has routed the request it rewrites ``path`` without the root path
    # (and names the route's handler in the scope): the path is then the routed one already.
    if root and "route_handler" not in scope:
        path = path.split(root, 1)[-1]  # Litestar's own reading (ASGIRouter.__call__),
        if not path.startswith("/"):  # whose normalize_path gives the leading slash back
            return "/" + path  # (a root path ending in one: ``/whalli/``, ``/``)
    return path


def root_of(scope: Mapping[str, Any]) -> str:
    """The app's root path as the paths it answers (links, cookies, a problem's ``instance``)
    start with it: without a trailing slash. ``uvicorn --root-path /whalli/`` (or ``/``) serves
    the paths ``/whalli`` (or none) does, and its links must be theirs: ``/whalli//api/...`` is
    another path to a proxy and to a cookie's ``Path``, and ``//api/...`` a URL of the host
    ``api``."""
    root: str = scope.get("root_path", "")
    return root.rstrip("/")


def client_path(scope: Mapping[str, Any]) -> str:
    """The request's path as its client called it (below the proxy's prefix): the app's root
    path, then the routed path, whether Litestar's router rewrote ``path`` yet or not."""
    return root_of(scope) + routed_path(scope)
