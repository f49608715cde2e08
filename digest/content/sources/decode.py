"""A feed's body decoded from its Content-Encoding, bounded across every coding layer.

httpx decodes a body one chunk at a time, but a chunk is inflated whole: 13 KB of
``Content-Encoding: gzip, gzip`` became one 4 GB chunk before any size check could see
it. Here each layer is a generator that inflates at most :data:`PIECE` bytes per call
(``zlib``'s ``max_length``), so the layers only do the work the reader asks for, and the
reader stops at ``max_bytes``: memory and time stay bounded by the limit, whatever the
compression ratio or the number of layers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from digest.errors import SourceError

PIECE = 64 * 1024
MAX_LAYERS = 2  # "gzip, gzip" is already odd; more is refused
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def codings(header: str | None) -> list[str]:
    """The codings a Content-Encoding header lists, in the order they were applied."""
    names = [c.strip().lower() for c in (header or "").split(",")]
    names = [n for n in names if n and n != "identity"]
    for name in names:
        if name not in _WBITS:
            raise SourceError(f"the feed is sent with Content-Encoding {name}, not gzip or deflate")
    if len(names) > MAX_LAYERS:
        raise SourceError(f"the feed is encoded {len(names)} times ({header}); not read")
    return names


def _inflate(chunks: Iterable[bytes], coding: str) -> Iterator[bytes]:
    wbits = _WBITS[coding]
    decoder: zlib._Decompress | None = None
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if decoder is None:
                    if coding == "deflate" and (data[0] & 0x0F) != 8:
                        wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it
                    decoder = zlib.decompressobj(wbits)
                piece = decoder.decompress(data, PIECE)
                data = decoder.unconsumed_tail
                if piece:
                    yield piece
                if decoder.eof:  # a gzip member ended; another may follow
                    data = decoder.unused_data.lstrip(b"\x00")
                    decoder = None
        if decoder is not None:
            while True:
                piece = decoder.decompress(b"", PIECE)
                if not piece:
                    break
                yield piece
    except zlib.error as exc:
        raise SourceError(f"the feed's {coding} encoding is broken: {exc}") from None


def decoded(raw: Iterable[bytes], header: str | None) -> Iterator[bytes]:
    """The body's bytes with every coding undone, lazily (last applied, first undone)."""
    stream: Iterable[bytes] = raw
    for coding in reversed(codings(header)):
        stream = _inflate(stream, coding)
    yield from stream
