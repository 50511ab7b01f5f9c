"""Which charset reads all of a text file: told while its bytes pass, once, at upload.

Detection (``text_sniffing``) looks at a file's head only; a download must name the charset of
every byte, or none. A file whose head starts with a UTF-16 byte order mark is read as UTF-16,
any other as UTF-8 (a UTF-8 BOM is UTF-8 too); the charset is that one when every byte decodes
with it, and the file does not end in the middle of a character; otherwise there is none.
"""

from __future__ import annotations

import codecs

UTF_8 = "utf-8"
UTF_16 = "utf-16"  # with a byte order mark, which says the byte order


class CharsetCheck:
    """Feed it the file's bytes in order (``feed``), then ask ``charset()``."""

    def __init__(self, head: bytes) -> None:
        utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        self._encoding: str | None = UTF_16 if utf16 else UTF_8
        self._decoder = codecs.getincrementaldecoder(self._encoding)()

    def feed(self, chunk: bytes) -> None:
        if self._encoding is None:
            return  # already not one charset: nothing more to learn
        try:
            self._decoder.decode(chunk, final=False)
        except UnicodeDecodeError:
            self._encoding = None

    def charset(self) -> str | None:
        """The charset that reads every byte fed, or None. Call it once, after the last."""
        if self._encoding is not None:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self._encoding = None
        return self._encoding
