from __future__ import annotations

from pathlib import Path

import pytest

from whalli.adapters.memory.text_extractor import InMemoryTextExtractor
from whalli.domain.model.attachments import ExtractionResult
from whalli.domain.model.errors import ExtractionFailed


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/markdown; charset=utf-8", "application/json"]
)
async def test_text_files_are_decoded(tmp_path: Path, content_type: str) -> None:
    path = tmp_path / "notes"
    path.write_text("Grüße, world", encoding="utf-8")

    result = await InMemoryTextExtractor().extract(path, content_type)

    assert result == ExtractionResult(text="Grüße, world", method="text")


async def test_long_text_is_truncated_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("x" * 50)

    result = await InMemoryTextExtractor(max_chars=10).extract(path, "text/plain")

    assert (result.text, result.truncated) == ("x" * 10, True)


async def test_other_file_types_fail_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(b"%PDF-1.7")

    with pytest.raises(ExtractionFailed, match="Cannot extract text from application/pdf"):
        await InMemoryTextExtractor().extract(path, "application/pdf")


async def test_bytes_that_are_not_utf8_fail_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\xfa")

    with pytest.raises(ExtractionFailed, match="not valid UTF-8"):
        await InMemoryTextExtractor().extract(path, "text/plain")
