"""ReadRaw + Validate: every raw record is checked against the contract; bad ones leave
through a tagged dead-letter output with their problems, counted with Beam metrics.

Checks that need other tables (unknown ids, launch times, duplicates) happen in the joins
(``joins.py``), which use the same dead-letter format.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ppm_tf.data import schema

VALID, DEAD_LETTER = "valid", "dead_letter"
RECORDS_READ = "records_read"  # Beam counter namespace: records read per table


def read_with_filesystems(path: str) -> bytes:
    """Reads a file from any filesystem Beam knows (local, gs://, ...).

    A path no installed filesystem serves (``https://``, or ``gs://`` without
    ``apache-beam[gcp]``) raises ``OSError`` like a missing file, so its item is
    dead-lettered instead of failing the pipeline."""
    try:
        handle = FileSystems.open(path)
    except ValueError as error:
        raise OSError(f"no filesystem can read {path!r}: {error}") from error
    with handle:
        return handle.read()


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

    def __init__(self, table: str, context: schema.ValidationContext):
        self.table = table
        self.context = context

    def process(self, line: bytes):
        if not line.strip():  # a blank line holds no record (as in ``raw_files.read_jsonl``)
            return
        beam.metrics.Metrics.counter(RECORDS_READ, self.table).inc()
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
            beam.metrics.Metrics.counter("valid", self.table).inc()
            yield checked

    def _with_image_bytes(self, record):
        """Loads the image once, so validation decodes it and the catalogue carries it."""
        path = schema.resolve_image_path(record["image"], self.context.image_root)
        try:
            return {**record, "image": self.context.read_image(path)}, None
        except OSError as error:
            return record, schema.Problem("image", f"image not readable: {error}",
                                          "unreadable_image")

    def _reject(self, entry):
        beam.metrics.Metrics.counter(DEAD_LETTER, dead_letter_key(entry)).inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTER, entry)


class ReadAndValidate(beam.PTransform):
    """Reads the JSON-lines files of one table; outputs ``valid`` records and ``dead_letter``
    entries. Items come out with their image as bytes (or ``None``)."""

    def __init__(self, table: str, pattern: str, context: schema.ValidationContext):
        super().__init__(label=f"ReadAndValidate[{table}]")
        self.table = table
        self.pattern = pattern
        self.context = context

    def expand(self, pbegin):
        return (pbegin
                # Bytes, not str: a line that is not UTF-8 is dead-lettered, not a crash.
                | "Read" >> beam.io.ReadFromText(self.pattern, coder=beam.coders.BytesCoder())
                | "Validate" >> beam.ParDo(_ValidateLines(self.table, self.context))
                .with_outputs(DEAD_LETTER, main=VALID))
