"""Beam pipelines, runnable as ``python -m beam_jobs.<name>`` with Beam pipeline options."""
