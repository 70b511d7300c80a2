"""A trained model as TF Serving runs it: ``publish`` (a validated version written
atomically), ``serving_module`` (the signatures), ``fresh_process_check`` (the graph as stock
TF Serving meets it), ``warmup`` (its warm-up records) and ``requests`` (the request protocol
clients speak)."""
from ppm_tf.export.publish import ExportRefused, export_model  # noqa: F401  (the stage entry)
