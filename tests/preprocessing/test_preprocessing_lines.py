"""Reading JSON lines with a per-record byte limit: the same lines as ``ReadFromText`` for
records under the limit, a cut preview and the true length for those over it, bounded
memory, and byte-range splits that neither lose nor repeat a line."""
import io
import tracemalloc

import pytest
from apache_beam.io import source_test_utils

from ppm_tf.preprocessing.lines import Line, _BoundedLinesSource, bounded_lines

MAX_BYTES, KEEP_BYTES = 10, 4
CONTENT = (b'{"a": 1}\n'  # under the limit
           b"\n"  # blank
           b'{"b": 22}\r\n'  # CRLF: the \r is dropped, as ReadFromText drops it
           b"0123456789\n"  # exactly at the limit
           b"0123456789A\n"  # one byte over
           + b"x" * 1000 + b"\n"  # far over
           b"last line without newline")
EXPECTED = [Line(b'{"a": 1}', 8, 9), Line(b"", 0, 1), Line(b'{"b": 22}', 9, 11),
            Line(b"0123456789", 10, 11), Line(b"0123", 11, 12), Line(b"xxxx", 1000, 1001),
            Line(b"last", 25, 25)]


@pytest.mark.parametrize("chunk_bytes", [1, 3, 7, 64, 1 << 16])
def test_bounded_lines_cut_only_the_lines_over_the_limit(chunk_bytes):
    lines = list(bounded_lines(io.BytesIO(CONTENT), MAX_BYTES, KEEP_BYTES, chunk_bytes))
    assert lines == EXPECTED
    assert sum(line.consumed for line in lines) == len(CONTENT)


def test_bounded_lines_end_with_a_line_break_or_not():
    assert list(bounded_lines(io.BytesIO(b"a\nb\n"), MAX_BYTES, KEEP_BYTES)) == [
        Line(b"a", 1, 2), Line(b"b", 1, 2)]
    assert list(bounded_lines(io.BytesIO(b""), MAX_BYTES, KEEP_BYTES)) == []
    assert list(bounded_lines(io.BytesIO(b"x" * 50), MAX_BYTES, KEEP_BYTES, 8)) == [
        Line(b"xxxx", 50, 50)]


class _Endless(io.RawIOBase):
    """A file of one ``size``-byte line and then ``{}``, made up as it is read."""

    def __init__(self, size: int):
        self.left = size

    def readable(self):
        return True

    def read(self, count=-1):
        if self.left <= 0:
            data, self.left = (b"\n{}" if self.left == 0 else b""), -1
            return data
        count = min(count, self.left)
        self.left -= count
        return b"y" * count


def test_a_50_mb_line_is_read_holding_about_the_limit_not_the_line():
    tracemalloc.start()
    try:
        lines = list(bounded_lines(_Endless(50 << 20), 1 << 20, 256))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [Line(b"y" * 256, 50 << 20, (50 << 20) + 1), Line(b"{}", 2, 2)]
    assert peak < 4 << 20, f"held {peak:,} bytes"


def test_split_sources_read_every_line_once(tmp_path):
    content = (CONTENT + b"\n") * 5
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    source = _BoundedLinesSource(str(path), MAX_BYTES, KEEP_BYTES)
    assert source_test_utils.read_from_source(source) == [
        (line.kept, line.length) for line in bounded_lines(io.BytesIO(content), MAX_BYTES,
                                                           KEEP_BYTES)]
    splits = [(split.source, split.start_position, split.stop_position)
              for split in source.split(desired_bundle_size=13)]
    assert len(splits) > 10
    source_test_utils.assert_sources_equal_reference_source((source, None, None), splits)


def test_dynamic_splits_of_a_file_lose_and_repeat_nothing(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(CONTENT)
    source = _BoundedLinesSource(str(path), MAX_BYTES, KEEP_BYTES)
    [whole] = source.split(desired_bundle_size=1 << 20)
    source_test_utils.assert_split_at_fraction_exhaustive(
        whole.source, whole.start_position, whole.stop_position)
