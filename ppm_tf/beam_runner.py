"""Pipeline options shared by every job: the runner is named explicitly, the job's own flags
are ``PipelineOptions`` subclasses, and a flag nobody knows is an error.

Beam's default Prism runner downloads a binary at start-up; when no ``--runner`` is given we
pick the DirectRunner in its single-process (``in_memory``) mode. Not multi-processing: on this
machine a loaded multi-process run dropped records without an error (see README, "Scaling
out"), and our jobs check that nothing was lost, so users who opt in
(``--direct_running_mode multi_processing --direct_num_workers N``) are told if it happens.
Any other runner (Dataflow, Flink, Spark) is chosen by options alone, e.g. ``--runner
DataflowRunner --project P --region R --temp_location gs://... --setup_file ./setup.py``.

A job's flags live in a ``PipelineOptions`` subclass, so they are pipeline options like
Beam's own: they appear in the job's display data (the Dataflow console lists them) and reach
the workers. Beam only warns about a flag it cannot parse; ``parse_job_options`` refuses it,
so a mistyped ``--max_seq_lne`` stops the job instead of being dropped.
"""
from __future__ import annotations

import argparse
from typing import Sequence, TypeVar

from apache_beam.options.pipeline_options import PipelineOptions

Options = TypeVar("Options", bound=PipelineOptions)


class WorkOptions(PipelineOptions):
    """``--work``, the work directory every job reads and writes. Beam parses all options
    classes with one parser, so a flag two jobs share is defined once, here."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--work", "--out", dest="work",
                            help="work directory (local or gs://); required")


class JobFlagError(ValueError):
    """A job was given a flag that neither it nor Beam knows, or lacks a required one."""


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    has_runner = any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args)
    defaults = [] if has_runner else ["--runner=DirectRunner",
                                      "--direct_running_mode=in_memory"]
    return PipelineOptions(defaults + list(beam_args))


def _job_help(options_class: type[PipelineOptions], prog: str, description: str) -> str:
    """The job's own flags (``WorkOptions``' and ``options_class``'), as ``--help``
    prints them."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog="Beam pipeline options (--runner, --project, --temp_location, ...) are "
               "accepted as well; any other flag is an error.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for flags in dict.fromkeys((WorkOptions, options_class)):
        flags._add_argparse_args(parser)
    return parser.format_help()


def parse_job_options(options_class: type[Options], argv: Sequence[str], prog: str,
                      description: str, required: Sequence[str] = ()) -> Options:
    """``argv`` -> the job's options (a view on all pipeline options, runner defaulted);
    ``--help`` prints the job's own flags and exits.

    Raises ``JobFlagError`` naming every flag that no ``PipelineOptions`` class defines, or
    a ``required`` option left unset (a PipelineOptions flag cannot be argparse-required:
    every job's options are parsed whenever any job's are).
    """
    if "--help" in argv or "-h" in argv:
        print(_job_help(options_class, prog, description))
        raise SystemExit(0)
    options = pipeline_options(argv)
    known = options.get_all_options()
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    if unknown:
        raise JobFlagError(
            "unknown flag(s) " + ", ".join(f"--{name}" for name in unknown) + ": not a flag "
            "of this job nor a Beam pipeline option (see --help)")
    missing = [name for name in required if known.get(name) is None]
    if missing:
        raise JobFlagError("missing required flag(s) "
                           + ", ".join(f"--{name}" for name in missing))
    return options.view_as(options_class)
