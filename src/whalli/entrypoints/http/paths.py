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
        return path.split(root, 1)[-1]  # Litestar's own reading (ASGIRouter.__call__)
    return path
