"""ReadRaw + Validate: every raw record is checked against the contract; bad ones leave
through a tagged dead-letter output with their problems, counted with Beam metrics.

Checks that need other tables (unknown ids, launch times, duplicates) happen in the joins
(``joins.py``), which use the same dead-letter format.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ppm_tf.data import raw_files, schema
from ppm_tf.preprocessing.lines import ReadBoundedLines

VALID, DEAD_LETTER = "valid", "dead_letter"
RECORDS_READ = "records_read"  # Beam counter namespace: records read per table
LINE_PREVIEW_BYTES = 256  # what a dead letter keeps of a record over the size limit


def read_with_filesystems(path: str, max_bytes: int) -> bytes:
    """Reads an image file from any filesystem Beam knows (local, gs://, ...), at most
    ``max_bytes`` of it.

    Local files go through ``raw_files.read_local_file`` (regular files only). Elsewhere the
    size comes from the filesystem's listing before the file is opened, and the bytes are read
    as stored (a ``.gz`` name is not decompressed). A path no installed filesystem serves
    (``gs://`` without ``apache-beam[gcp]``) raises ``OSError`` like a missing file, so its
    item is dead-lettered instead of failing the pipeline."""
    if raw_files.URL_SEPARATOR not in path:
        return raw_files.read_local_file(path, max_bytes)
    try:
        matched = FileSystems.match([path])[0].metadata_list
    except ValueError as error:
        raise OSError(f"no filesystem can read {path!r}: {error}") from error
    sizes = [file.size_in_bytes for file in matched if file.path == path]
    if not sizes:
        raise FileNotFoundError(f"no such file: {path!r}")
    raw_files.check_image_size(path, sizes[0], max_bytes)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        content = handle.read(max_bytes + 1)
    raw_files.check_image_size(path, len(content), max_bytes)
    return content


def dead_letter(table: str, problems: Iterable[schema.Problem], record: Any = None,
                line: str | None = None) -> dict[str, Any]:
    """A dead-letter entry: the table, every problem, and the record (or raw line) as read."""
    entry = {"table": table, "problems": [problem.as_dict() for problem in problems]}
    if record is not None:
        entry["record"] = record
    if line is not None:
        entry["line"] = line
    return entry


def dead_letter_key(entry: dict[str, Any]) -> str:
    """What dead-letter counts group by: table, field and code of the first problem."""
    first = entry["problems"][0]
    return f"{entry['table']}.{first['field']}.{first['code']}"


def dead_letter_json(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, default=repr)


class _ValidateLines(beam.DoFn):
    """Parses and validates one JSON line of ``table``."""

    def __init__(self, table: str, context: schema.ValidationContext, max_record_bytes: int):
        self.table = table
        self.context = context
        self.max_record_bytes = max_record_bytes

    def setup(self):
        # Made once per worker, not looked up for every line (two per record otherwise).
        self.read = beam.metrics.Metrics.counter(RECORDS_READ, self.table)
        self.valid = beam.metrics.Metrics.counter(VALID, self.table)

    def process(self, element: tuple[bytes, int]):
        line, length = element
        if not line.strip() and len(line) == length:  # a blank line holds no record
            return
        self.read.inc()
        if len(line) < length:  # cut by the reader: over max_record_bytes
            yield self._reject(self._too_large(line, length))
            return
        record, problem = schema.parse_json_record(line)
        if problem is not None:
            text = line.decode("utf-8", errors="replace")
            yield self._reject(dead_letter(self.table, [problem], line=text))
            return
        checked = record
        # An empty path is left to the validator, which reports it as empty.
        if self.table == schema.ITEMS and isinstance(record.get("image"), str) \
                and record["image"].strip():
            checked, problem = self._with_image_bytes(record)
            if problem is not None:
                yield self._reject(dead_letter(self.table, [problem], record=record))
                return
        problems = schema.validate_record(self.table, checked, self.context)
        if problems:
            yield self._reject(dead_letter(self.table, problems, record=record))
        else:
            self.valid.inc()
            yield checked

    def _too_large(self, preview: bytes, length: int):
        """Never parsed, and only its first bytes kept: the record itself is the hazard."""
        problem = schema.Problem("<record>", f"record of {length:,} bytes is over "
                                 f"max_record_bytes={self.max_record_bytes:,} (not parsed; the "
                                 f"dead letter keeps its first {len(preview)} bytes)",
                                 "record_too_large")
        return dead_letter(self.table, [problem],
                           line=preview.decode("utf-8", errors="replace"))

    def _with_image_bytes(self, record):
        """Loads the image once, so validation decodes it and the catalogue carries it."""
        image, failure = schema.read_image(record["image"], self.context)
        if failure:
            return record, schema.Problem("image", failure[1], failure[0])
        return {**record, "image": image}, None

    def _reject(self, entry):
        beam.metrics.Metrics.counter(DEAD_LETTER, dead_letter_key(entry)).inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTER, entry)


class ReadAndValidate(beam.PTransform):
    """Reads the JSON-lines files of one table; outputs ``valid`` records and ``dead_letter``
    entries. Items come out with their image as bytes (or ``None``). A line over
    ``max_record_bytes`` is dead-lettered before it is parsed."""

    def __init__(self, table: str, pattern: str, context: schema.ValidationContext,
                 max_record_bytes: int = schema.DEFAULT_MAX_RECORD_BYTES):
        super().__init__(label=f"ReadAndValidate[{table}]")
        self.table = table
        self.pattern = pattern
        self.context = context
        self.max_record_bytes = max_record_bytes

    def expand(self, pbegin):
        return (pbegin
                # Bytes, not str: a line that is not UTF-8 is dead-lettered, not a crash.
                | "Read" >> ReadBoundedLines(self.pattern, self.max_record_bytes,
                                             LINE_PREVIEW_BYTES)
                | "Validate" >> beam.ParDo(_ValidateLines(self.table, self.context,
                                                          self.max_record_bytes))
                .with_outputs(DEAD_LETTER, main=VALID))
