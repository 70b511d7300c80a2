"""Pipeline options shared by every job: the runner is named explicitly.

Beam's default Prism runner downloads a binary at start-up; when no ``--runner`` is given we
pick the DirectRunner in multi-processing mode on all cores. Any other runner (Dataflow,
Flink, Spark) is chosen by options alone, e.g. ``--runner DataflowRunner --project P
--region R --temp_location gs://... --setup_file ./setup.py``.
"""
from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    has_runner = any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args)
    defaults = [] if has_runner else [
        "--runner=DirectRunner", "--direct_running_mode=multi_processing",
        f"--direct_num_workers={os.cpu_count() or 1}",
        # Keep worker processes' INFO chatter out of the user's terminal.
        "--default_sdk_harness_log_level=WARNING"]
    return PipelineOptions(defaults + list(beam_args))
