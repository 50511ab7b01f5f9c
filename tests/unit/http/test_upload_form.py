"""The multipart framing checks of uploads: boundary syntax (RFC 2046) and declared lengths."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.exceptions import ClientException

from whalli.domain.model.errors import AttachmentTooLarge
from whalli.entrypoints.http.uploads import (
    FRAMING_ALLOWANCE,
    UploadForm,
    boundary_of,
    check_declared_length,
)


@pytest.mark.parametrize(
    ("header", "boundary"),
    [
        ("multipart/form-data; boundary=abc", "abc"),
        ("Multipart/Form-Data; boundary=" + "a" * 70, "a" * 70),
        ('multipart/form-data; boundary="with space:=?(),+_-./\'x"', "with space:=?(),+_-./'x"),
    ],
)
def test_valid_boundaries_are_accepted(header: str, boundary: str) -> None:
    assert boundary_of(header) == boundary


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "application/json",
        "multipart/mixed; boundary=abc",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "a" * 71,
        'multipart/form-data; boundary="ends with space "',
        "multipart/form-data; boundary=semi{colon}",
        'multipart/form-data; boundary="new\\nline"',
    ],
)
def test_invalid_content_types_and_boundaries_are_refused(header: str | None) -> None:
    with pytest.raises(ClientException, match="multipart"):
        boundary_of(header)


def test_a_declared_length_beyond_the_limit_and_framing_allowance_is_too_large() -> None:
    check_declared_length(None, 10)
    check_declared_length(10 + FRAMING_ALLOWANCE, 10)
    with pytest.raises(AttachmentTooLarge, match="limit of 10 bytes"):
        check_declared_length(11 + FRAMING_ALLOWANCE, 10)


async def _body(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_fields_before_the_file_are_read_then_the_file_streams_in_pieces() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="projectId"\r\n\r\nabc\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a b.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\nworld\r\n--b--\r\n"
    )
    form = UploadForm(_body(body), "b", 1000, accepted=("projectId",))
    await form.open()
    assert form.fields == {"projectId": "abc"}
    assert form.filename == "a b.txt"
    assert b"".join([chunk async for chunk in form.file_chunks()]) == b"hello\r\nworld"


def _field(name: str, value: str) -> bytes:
    return f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


FILE_PART = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nhi\r\n--b--\r\n'
)


@pytest.mark.parametrize("accepted", [("projectId",), ()])
async def test_a_field_the_form_does_not_take_is_refused_naming_it(
    accepted: tuple[str, ...],
) -> None:
    form = UploadForm(_body(_field("project_id", "abc") + FILE_PART), "b", 1000, accepted=accepted)
    with pytest.raises(ClientException, match="Unknown form field 'project_id'"):
        await form.open()
    assert form.fields == {}


@pytest.mark.parametrize("second", ["def", "abc"])
async def test_a_field_given_twice_is_refused_whatever_its_values(second: str) -> None:
    body = _field("projectId", "abc") + _field("projectId", second) + FILE_PART
    form = UploadForm(_body(body), "b", 1000, accepted=("projectId",))
    with pytest.raises(ClientException, match="'projectId' is given more than once"):
        await form.open()


async def test_an_encoded_file_part_is_refused() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n"
    )
    form = UploadForm(_body(body), "b", 1000)
    with pytest.raises(ClientException, match="Encoded"):
        await form.open()


async def test_a_body_beyond_the_limit_stops_while_streaming() -> None:
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    form = UploadForm(_body(head + b"x" * (FRAMING_ALLOWANCE + 2000), 4096), "b", 1000)
    await form.open()
    with pytest.raises(AttachmentTooLarge, match="limit of 1000 bytes"):
        async for _ in form.file_chunks():
            pass
