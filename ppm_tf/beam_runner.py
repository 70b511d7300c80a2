"""Pipeline options shared by every job: the runner is named explicitly.

Beam's default Prism runner downloads a binary at start-up; when no ``--runner`` is given we
pick the DirectRunner in its single-process (``in_memory``) mode. Not multi-processing: on this
machine a loaded multi-process run dropped records without an error (known upstream:
tensorflow/data-validation#247, tensorflow/tfx#5072), and our jobs now check that nothing was
lost, so users who opt in (``--direct_running_mode multi_processing --direct_num_workers N``)
are told if it happens. Any other runner (Dataflow, Flink, Spark) is chosen by options alone,
e.g. ``--runner DataflowRunner --project P --region R --temp_location gs://...
--setup_file ./setup.py``.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    has_runner = any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args)
    defaults = [] if has_runner else ["--runner=DirectRunner",
                                      "--direct_running_mode=in_memory"]
    return PipelineOptions(defaults + list(beam_args))
