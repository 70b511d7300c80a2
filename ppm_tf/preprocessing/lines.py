"""JSON-lines files read with a per-record byte limit.

Beam's ``ReadFromText`` holds a whole line however long it is, and grows its buffer by
copying it (a 40 MB line took 200 s on this machine). ``ReadBoundedLines`` holds at most
``max_record_bytes`` of a line (plus one read chunk): a longer line comes out as its first
``keep_bytes`` and its length, so the validator can dead-letter it without parsing it.
Files are split into byte ranges as ``ReadFromText`` splits them (a record belongs to the
range its first byte lies in), so one large file is still read in parallel.
"""
from __future__ import annotations

from typing import BinaryIO, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.io import filebasedsource

CHUNK_BYTES = 1 << 16


class Line(NamedTuple):
    """One line of a file: its bytes without the line break (only the first ``keep_bytes``
    of an over-long line), its length (``len(kept)`` unless over-long), and the bytes it
    takes in the file."""

    kept: bytes
    length: int
    consumed: int


def bounded_lines(handle: BinaryIO, max_bytes: int, keep_bytes: int,
                  chunk_bytes: int = CHUNK_BYTES) -> Iterator[Line]:
    """Yields the lines of ``handle`` (``\\n``-separated; a trailing ``\\r`` is dropped, as
    ``ReadFromText`` drops it) holding at most ``max_bytes + chunk_bytes`` bytes at a time.
    ``keep_bytes`` must be at most ``max_bytes``, so an over-long line is always cut."""
    buffer, start, scanned = bytearray(), 0, 0
    while True:
        newline = buffer.find(b"\n", scanned)
        if newline >= 0:
            yield _line(buffer, start, newline, max_bytes, keep_bytes)
            start = scanned = newline + 1
            continue
        if len(buffer) - start > max_bytes:
            yield _discard_rest(handle, bytes(buffer[start:start + keep_bytes]),
                                len(buffer) - start, chunk_bytes, buffer)
            start = scanned = 0
            continue
        chunk = handle.read(chunk_bytes)
        if not chunk:
            if len(buffer) > start:
                yield _line(buffer, start, len(buffer), max_bytes, keep_bytes)
            return
        del buffer[:start]
        scanned, start = len(buffer), 0
        buffer += chunk


def _line(buffer: bytearray, start: int, end: int, max_bytes: int, keep_bytes: int) -> Line:
    """The line in ``buffer[start:end]``, followed by a line break unless at the file's end."""
    consumed = end - start + (end < len(buffer))
    if end - start > max_bytes:
        return Line(bytes(buffer[start:start + keep_bytes]), end - start, consumed)
    kept = bytes(buffer[start:end]).removesuffix(b"\r")
    return Line(kept, len(kept), consumed)


def _discard_rest(handle: BinaryIO, kept: bytes, length: int, chunk_bytes: int,
                  buffer: bytearray) -> Line:
    """Reads past the rest of an over-long line; ``buffer`` is left holding what follows."""
    buffer.clear()
    while True:
        chunk = handle.read(chunk_bytes)
        if not chunk:
            return Line(kept, length, length)
        newline = chunk.find(b"\n")
        if newline >= 0:
            buffer += chunk[newline + 1:]
            return Line(kept, length + newline, length + newline + 1)
        length += len(chunk)


class _BoundedLinesSource(filebasedsource.FileBasedSource):
    def __init__(self, pattern: str, max_bytes: int, keep_bytes: int):
        super().__init__(pattern)
        self.max_bytes = max_bytes
        self.keep_bytes = min(keep_bytes, max_bytes)

    def default_output_coder(self):
        return beam.coders.TupleCoder([beam.coders.BytesCoder(), beam.coders.VarIntCoder()])

    def read_records(self, file_name, range_tracker):
        start = range_tracker.start_position()
        with self.open_file(file_name) as handle:
            position = 0
            if start > 0:
                # The line holding byte start - 1 belongs to the range before this one.
                handle.seek(start - 1)
                lines = bounded_lines(handle, self.max_bytes, self.keep_bytes)
                skipped = next(lines, None)
                if skipped is None:
                    return
                position = start - 1 + skipped.consumed
            else:
                lines = bounded_lines(handle, self.max_bytes, self.keep_bytes)
            while range_tracker.try_claim(position):
                line = next(lines, None)
                if line is None:
                    return
                yield line.kept, line.length
                position += line.consumed


class ReadBoundedLines(beam.PTransform):
    """File pattern -> (bytes, length) per line; ``bytes`` is shorter than ``length`` exactly
    when the line is over ``max_bytes`` (then it holds the first ``keep_bytes``)."""

    def __init__(self, pattern: str, max_bytes: int, keep_bytes: int):
        super().__init__()
        self.pattern = pattern
        self.max_bytes = max_bytes
        self.keep_bytes = keep_bytes

    def expand(self, pbegin):
        return pbegin | beam.io.Read(_BoundedLinesSource(self.pattern, self.max_bytes,
                                                         self.keep_bytes))
