"""PdfOcrTextExtractor and its sandbox on files made here; needs the tesseract binary only."""

from __future__ import annotations

import io
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from tests.support.documents import (
    circular_form_pdf,
    encrypted_pdf,
    flate_bomb_pdf,
    image_bytes,
    png_declaring,
    scanned_pdf,
    text_image,
    text_pdf,
)
from whalli.adapters.extraction.pdf_ocr import PdfOcrTextExtractor, clean, extract_file
from whalli.adapters.extraction.sandbox import run_limited
from whalli.domain.model.attachments import ExtractionResult, PageExtraction
from whalli.domain.model.errors import ExtractionFailed

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract")

MB = 1024 * 1024


# --- targets for run_limited: top level, so that the child can import them ----------------------
def add(a: int, b: int) -> int:
    return a + b


def sleep_then_answer(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


def allocate(size: int) -> int:
    return len(bytearray(size))


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def refuse() -> None:
    raise ExtractionFailed("the file says no")


def thread_limit() -> str | None:
    return os.environ.get("OMP_THREAD_LIMIT")


def page(number: int) -> PageExtraction:
    return PageExtraction(page=number, method="ocr", chars=3)


def unencodable() -> object:
    return object()


# --- the sandbox ---------------------------------------------------------------------------------
def test_the_sandbox_returns_what_the_function_returns() -> None:
    assert run_limited(add, 2, 3, wall_time_s=30, memory_bytes=512 * MB) == 5


def test_the_answer_is_decoded_to_the_type_asked_for() -> None:
    answer = run_limited(page, 7, wall_time_s=30, memory_bytes=512 * MB, returns=PageExtraction)
    assert answer == PageExtraction(page=7, method="ocr", chars=3)


def test_an_answer_that_cannot_be_encoded_is_a_failure() -> None:
    with pytest.raises(ExtractionFailed, match=r"^the extractor returned an unusable result"):
        run_limited(unencodable, wall_time_s=30, memory_bytes=512 * MB)


def test_the_child_runs_tesseract_with_one_openmp_thread() -> None:
    assert run_limited(thread_limit, wall_time_s=30, memory_bytes=512 * MB) == "1"


def test_a_function_past_the_wall_time_is_killed() -> None:
    with pytest.raises(ExtractionFailed, match=r"^the extraction took longer than 0\.5 s$"):
        run_limited(sleep_then_answer, 60, wall_time_s=0.5, memory_bytes=512 * MB)


def test_a_function_needing_more_memory_than_allowed_fails_with_a_reason() -> None:
    with pytest.raises(
        ExtractionFailed, match=r"^the extraction needed more than 256 MB of memory$"
    ):
        run_limited(allocate, 1024 * MB, wall_time_s=30, memory_bytes=256 * MB)


def test_a_crashing_child_is_reported_with_its_signal() -> None:
    with pytest.raises(ExtractionFailed, match=r"^the extractor crashed \(signal 11\)$"):
        run_limited(segfault, wall_time_s=30, memory_bytes=512 * MB)


def test_the_childs_own_extraction_failure_keeps_its_message() -> None:
    with pytest.raises(ExtractionFailed, match=r"^the file says no$"):
        run_limited(refuse, wall_time_s=30, memory_bytes=512 * MB)


def test_the_parent_still_works_after_its_children_failed() -> None:
    failures: list[Callable[[], object]] = [
        lambda: run_limited(segfault, wall_time_s=30, memory_bytes=512 * MB),
        lambda: run_limited(allocate, 1024 * MB, wall_time_s=30, memory_bytes=256 * MB),
    ]
    for failure in failures:
        with pytest.raises(ExtractionFailed, match="the extract"):
            failure()
    assert run_limited(add, 1, 1, wall_time_s=30, memory_bytes=512 * MB) == 2


# --- the extractor -------------------------------------------------------------------------------
@pytest.fixture
def extractor() -> PdfOcrTextExtractor:
    return PdfOcrTextExtractor(wall_time_s=120, memory_bytes=1024 * MB)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def words(result: ExtractionResult) -> set[str]:
    return set(result.text.lower().split())


async def test_a_text_pdf_is_read_from_its_text_layer(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    path = write(tmp_path, "a.pdf", text_pdf("Quarterly report for Whalli"))
    result = await extractor.extract(path, "application/pdf")
    assert result == ExtractionResult(
        text="Quarterly report for Whalli",
        method="text",
        page_count=1,
        pages=(PageExtraction(page=1, method="text", chars=27),),
    )


async def test_a_multi_page_pdf_keeps_its_pages_in_order(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    path = write(tmp_path, "b.pdf", text_pdf("First page text", "Second page text", "Third one"))
    result = await extractor.extract(path, "application/pdf")
    assert result.text == "First page text\n\nSecond page text\n\nThird one"
    assert result.page_count == 3
    assert [page.method for page in result.pages] == ["text", "text", "text"]


async def test_a_long_pdf_is_cut_at_the_text_cap(tmp_path: Path) -> None:
    extractor = PdfOcrTextExtractor(max_chars=20)
    path = write(tmp_path, "c.pdf", text_pdf("First page text", "Second page text", "Third one"))
    result = await extractor.extract(path, "application/pdf")
    assert result.text == "First page text\n\nSec"
    assert result.truncated
    assert result.page_count == 3


async def test_a_scanned_pdf_is_read_by_ocr(extractor: PdfOcrTextExtractor, tmp_path: Path) -> None:
    path = write(tmp_path, "scan.pdf", scanned_pdf("Scanned invoice", "Total amount 1234"))
    result = await extractor.extract(path, "application/pdf")
    assert {"scanned", "invoice", "total", "amount", "1234"} <= words(result)
    assert result.method == "ocr"
    assert result.pages[0].method == "ocr"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "TIFF", "WEBP", "GIF"])
async def test_images_are_read_by_ocr(
    extractor: PdfOcrTextExtractor, tmp_path: Path, image_format: str
) -> None:
    image = text_image("Hello Whalli", "Meeting notes 2024")
    path = write(tmp_path, "picture", image_bytes(image, image_format))
    result = await extractor.extract(path, "image/png")
    assert {"hello", "whalli", "meeting", "notes", "2024"} <= words(result)
    assert result.method == "ocr"


async def test_each_frame_of_a_multi_page_tiff_is_a_page(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    first, second = text_image("First fax page"), text_image("Second fax page")
    buffer = io.BytesIO()
    first.save(buffer, format="TIFF", save_all=True, append_images=[second])
    result = await extractor.extract(write(tmp_path, "fax.tiff", buffer.getvalue()), "image/tiff")
    assert result.page_count == 2
    assert [page.method for page in result.pages] == ["ocr", "ocr"]
    assert {"first", "second", "fax", "page"} <= words(result)


async def test_text_on_a_transparent_background_is_read(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    image = Image.new("RGBA", (1400, 300), (0, 0, 0, 0))
    font = ImageFont.load_default(size=56)
    ImageDraw.Draw(image).text((60, 60), "Transparent label", fill="black", font=font)
    path = write(tmp_path, "label.png", image_bytes(image, "PNG"))
    assert {"transparent", "label"} <= words(await extractor.extract(path, "image/png"))


async def test_an_encrypted_pdf_fails_with_a_clear_reason(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    path = write(tmp_path, "locked.pdf", encrypted_pdf("Top secret words"))
    with pytest.raises(ExtractionFailed, match=r"^the PDF is encrypted$"):
        await extractor.extract(path, "application/pdf")


async def test_a_truncated_pdf_fails_with_a_reason(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    whole = text_pdf("Some text", "More text")
    path = write(tmp_path, "cut.pdf", whole[: len(whole) // 2])
    with pytest.raises(ExtractionFailed, match=r"^the PDF is damaged or incomplete$"):
        await extractor.extract(path, "application/pdf")


async def test_a_pdf_drawing_itself_in_a_loop_ends_with_its_text(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    path = write(tmp_path, "loop.pdf", circular_form_pdf())
    assert (await extractor.extract(path, "application/pdf")).text == "loop"


async def test_a_pdf_bomb_fails_on_the_memory_limit_and_not_the_process(tmp_path: Path) -> None:
    extractor = PdfOcrTextExtractor(memory_bytes=256 * MB)
    path = write(tmp_path, "bomb.pdf", flate_bomb_pdf(512 * MB))
    with pytest.raises(ExtractionFailed, match=r"^the extraction needed more than 256 MB of "):
        await extractor.extract(path, "application/pdf")
    small = write(tmp_path, "ok.pdf", text_pdf("still alive"))
    assert (await extractor.extract(small, "application/pdf")).text == "still alive"


async def test_an_empty_file_fails_with_a_reason(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    path = write(tmp_path, "empty.pdf", b"")
    with pytest.raises(ExtractionFailed, match=r"^the file is empty$"):
        await extractor.extract(path, "application/pdf")


async def test_html_named_pdf_is_not_extracted(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    path = write(tmp_path, "page.pdf", b"<html><body>hi</body></html>")
    with pytest.raises(ExtractionFailed, match=r"^cannot extract text from text/html files$"):
        await extractor.extract(path, "application/pdf")


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (8000, 8000)])
async def test_a_decompression_bomb_fails_its_job_and_not_the_process(
    extractor: PdfOcrTextExtractor, tmp_path: Path, width: int, height: int
) -> None:
    path = write(tmp_path, "bomb.png", png_declaring(width, height))
    with pytest.raises(ExtractionFailed, match=r"^the image is too large to be read"):
        await extractor.extract(path, "image/png")
    small = write(tmp_path, "ok.txt", b"still alive")
    assert (await extractor.extract(small, "text/plain")).text == "still alive"


async def test_text_files_are_decoded_whatever_their_charset(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    text = "Grüße aus Köln, ça va très bien.\n"
    for index, data in enumerate([text.encode(), text.encode("utf-16")]):
        path = write(tmp_path, f"t{index}.txt", data)
        result = await extractor.extract(path, "text/plain")
        assert result.text == text.strip()
        assert result.method == "text"


async def test_a_text_file_turning_out_not_to_be_utf8_is_decoded_by_charset_detection(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    head = "The first lines of this file are plain ASCII, like many exports are.\n" * 200
    tail = "Später kommen Umlaute: Grüße aus Köln, schöne Größe.\n" * 20
    path = write(tmp_path, "legacy.txt", (head + tail).encode("cp1252"))
    result = await extractor.extract(path, "text/plain")
    assert result.text == (head + tail).strip()


async def test_a_long_text_file_is_cut_at_the_text_cap(tmp_path: Path) -> None:
    extractor = PdfOcrTextExtractor(max_chars=100)
    path = write(tmp_path, "long.txt", "é".encode() * 10_000)
    result = await extractor.extract(path, "text/plain")
    assert result.text == "é" * 100
    assert result.truncated


async def test_a_markdown_file_is_extracted_as_text(
    extractor: PdfOcrTextExtractor, tmp_path: Path
) -> None:
    path = write(tmp_path, "notes.md", b"# Notes\n\n- first\n- second\n")
    result = await extractor.extract(path, "text/markdown")
    assert result.text == "# Notes\n\n- first\n- second"


SEEDS = [
    text_pdf("Some text", "More text"),
    encrypted_pdf("Locked"),
    image_bytes(text_image("Hi", size=(200, 80)), "PNG"),
    image_bytes(text_image("Hi", size=(200, 80)), "TIFF"),
    "Grüße, ça va?\n".encode("utf-16"),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    keep=st.integers(1, 10**6),
)
def test_damaged_files_end_in_a_result_or_a_reason_and_never_in_a_crash(
    seed: bytes, flips: list[tuple[int, int]], keep: int
) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    options = PdfOcrTextExtractor().options
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "damaged"
        path.write_bytes(bytes(data[: keep % len(data) + 1]))
        try:
            result = run_limited(
                extract_file,
                str(path),
                options,
                wall_time_s=60,
                memory_bytes=1024 * MB,
                returns=ExtractionResult,
            )
        except ExtractionFailed as failure:
            result = failure
    assert isinstance(result, ExtractionResult | ExtractionFailed)


def test_tesseract_languages_are_checked_when_the_extractor_is_made() -> None:
    assert PdfOcrTextExtractor(languages="eng+osd").options.languages == "eng+osd"
    with pytest.raises(ValueError, match="Tesseract languages"):
        PdfOcrTextExtractor(languages="eng --psm 0")


def test_cleaning_removes_nul_and_lone_surrogates() -> None:
    assert clean("a\x00b\ud800c") == "ab\ufffdc"
