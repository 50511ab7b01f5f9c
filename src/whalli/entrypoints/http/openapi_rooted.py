"""The API's docs under the app's root path.

Served under one (``WHALLI_ROOT_PATH``, ``uvicorn --root-path``), the docs page must fetch its
schema there, and the schema's ``servers`` must say so, or a client generated from it calls the
host's root. Litestar builds both from the routes alone; these plugins add the request's root.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.constants import OPENAPI_JSON_HANDLER_NAME
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin

from whalli.entrypoints.http.paths import root_of


class RootedScalar(ScalarRenderPlugin):
    """The Scalar UI, reading the schema under the app's root path."""

    @staticmethod
    def get_openapi_json_route(request: Request[Any, Any, Any]) -> str:
        return root_of(request.scope) + request.app.route_reverse(OPENAPI_JSON_HANDLER_NAME)


class RootedJson(JsonRenderPlugin):
    """``openapi.json``, its ``servers`` the app's root path when it has one."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        root = root_of(request.scope)
        if root:
            openapi_schema = {**openapi_schema, "servers": [{"url": root}]}
        return self.render_json(request, openapi_schema)
