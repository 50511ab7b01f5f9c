"""What Litestar cannot read off a handler, added to its operation in the OpenAPI document.

- A route that parses its own multipart body (streamed with bounded memory, so no ``data``
  parameter) gets no request body from Litestar: its decorator passes
  ``operation_class=documented(body=multipart_form(...))``, listing the form's parts by the
  names the route's parser takes, so the docs UI and generated clients can send the file.
- A route answering a ``Redirect`` only in some cases (a JSON 200 or a stream otherwise) gets
  only its usual status: ``documented(responses={302: redirect(...)})`` lists the 302 with its
  ``Location`` header, as Litestar lists a route whose only answer is a redirect.

Only the document changes: parsing and answers stay in the handlers. What is given here
replaces what Litestar built under the same status; every other response is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

from whalli.entrypoints.http.uploads import FILE_FIELD

MULTIPART = "multipart/form-data"


def documented(
    *, body: RequestBody | None = None, responses: Mapping[int, OpenAPIResponse] | None = None
) -> type[Operation]:
    """An ``operation_class`` adding ``body`` and ``responses`` to what Litestar documents."""
    extra = {str(status): response for status, response in (responses or {}).items()}

    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            if body is not None:
                self.request_body = body
            if extra:
                self.responses = {**(self.responses or {}), **extra}

    return DocumentedOperation


def redirect(description: str) -> OpenAPIResponse:
    """A 302 to the URL in its ``Location`` header."""
    location = OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING), description="Where to go.", required=True
    )
    return OpenAPIResponse(description=description, headers={"Location": location})


def multipart_form(
    description: str,
    file_description: str,
    fields: Mapping[str, Schema],
    required: Sequence[str] = (),
) -> RequestBody:
    """A required ``multipart/form-data`` body: the binary ``file`` part (required, as the
    parsers of ``uploads.py`` and ``audio_form.py`` read it) and the text ``fields`` (optional
    unless named in ``required``), in the order the route wants them; no other part (the
    routes refuse any other with a 400 naming it)."""
    file = Schema(
        type=OpenAPIType.STRING,
        format=OpenAPIFormat.BINARY,
        content_media_type="application/octet-stream",
        description=file_description,
    )
    schema = Schema(
        type=OpenAPIType.OBJECT,
        properties={**fields, FILE_FIELD: file},
        required=[FILE_FIELD, *required],
        additional_properties=False,
    )
    return RequestBody(
        content={MULTIPART: OpenAPIMediaType(schema=schema)},
        description=description,
        required=True,
    )


def text_field(
    description: str,
    *,
    format: OpenAPIFormat | None = None,
    enum: Sequence[str] | None = None,
    default: str | None = None,
) -> Schema:
    """A text part of a form."""
    return Schema(
        type=OpenAPIType.STRING, format=format, enum=enum, default=default, description=description
    )
