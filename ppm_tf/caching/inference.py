"""Beam ``RunInference`` over our SavedModels, with a dead-letter output.

Both caches run a frozen SavedModel (the encoders, PPM's user tower) through Beam's
``TFModelHandlerTensor``, keyed (``KeyedModelHandler``) so each result stays with what it
belongs to. ``SavedModelHandler`` replaces the stock loader in one place: the exports are
plain ``tf.Module`` SavedModels called through a named signature (the stock loader goes
through ``tf.keras.models.load_model``, which treats them as pre-TF-2.5 Keras models and
warns), and a model with custom ops (the text encoder's tokeniser) needs their module
imported on the worker first. PCollections carry plain bytes and numpy arrays, never
tf.Tensors.

``InferenceWithDeadLetters`` is ``RunInference(...).with_exception_handling()`` made
element-exact: Beam reports a failing *batch*, so its elements are run again one at a time,
and only an element that fails on its own is dead-lettered, with the exception as its
reason and a Beam counter; its batch-mates are kept. Nothing is lost silently.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor


class SavedModelHandler(TFModelHandlerTensor):
    """``TFModelHandlerTensor`` for a plain SavedModel called by ``inference_fn``;
    ``custom_ops``: modules to import before loading (they register the model's ops).

    Every call runs ``batch_size`` rows: Beam batches that many elements, and a bundle's
    last, shorter batch is padded with copies of its first element, whose results are
    dropped. TensorFlow's CPU kernels round a row differently at different batch sizes (by
    up to about 1e-7), and Beam would size batches by the bundles a run happens to form, so
    only one size gives an element the same result on every run (README, *Two runs of the
    same command*).
    """

    def __init__(self, model_uri: str, inference_fn: Callable, *, batch_size: int,
                 custom_ops: Sequence[str] = (),
                 element_bytes: Callable[[Any], int] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        super().__init__(model_uri, inference_fn=inference_fn, min_batch_size=batch_size,
                         max_batch_size=batch_size)
        self.custom_ops = tuple(custom_ops)
        self.element_bytes = element_bytes
        self.batch_size = batch_size

    def run_inference(self, batch: Sequence[Any], model, inference_args=None):
        padding = [batch[0]] * (self.batch_size - len(batch))
        results = super().run_inference(list(batch) + padding, model, inference_args)
        return list(results)[:len(batch)]

    def load_model(self):
        import tensorflow as tf

        for module in self.custom_ops:
            importlib.import_module(module)
        return tf.saved_model.load(self._model_uri)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        if self.element_bytes is None:
            return super().get_num_bytes(batch)
        return sum(self.element_bytes(element) for element in batch)


def _elements_of_failed_batch(failure) -> Iterable[Any]:
    batch, _ = failure
    yield from batch


def failure_reason(error) -> str:
    """Beam's ``(type, repr, traceback lines)`` of a caught exception -> its last traceback
    line, ``Type: message`` (TensorFlow's errors have an empty repr)."""
    exception_type, message, traceback_lines = error
    if traceback_lines:
        return " ".join(traceback_lines[-1].split())[:2000]
    return f"{getattr(exception_type, '__name__', exception_type)}: {message}"[:2000]


def _dead_letter(failure, counter: tuple[str, str],
                 describe: Callable[[Any], list[dict[str, Any]]]):
    """(a one-element batch, error) -> one dead-letter record per item the element stood
    for (``describe`` lists them), each counted."""
    (element,), error = failure
    key, _ = element
    dead_lettered = beam.metrics.Metrics.counter(*counter)
    for record in describe(key):
        dead_lettered.inc()
        yield {**record, "reason": failure_reason(error)}


class InferenceWithDeadLetters(beam.PTransform):
    """``(key, input)`` -> ``(results, dead_letters)``: ``(key, PredictionResult)`` for every
    input that runs, and for a failing one a record per item ``describe(key)`` lists, with
    its ``reason``, each counted by the Beam counter ``counter`` (namespace, name).

    ``handler(batch_size)`` makes the unkeyed model handler; batches run at
    ``batch_size``, a failed batch's elements again one at a time.
    """

    def __init__(self, handler: Callable[[int], SavedModelHandler], batch_size: int,
                 counter: tuple[str, str], describe: Callable[[Any], list[dict[str, Any]]]):
        super().__init__()
        self.batched = KeyedModelHandler(handler(batch_size))
        self.single = KeyedModelHandler(handler(1))
        self.counter = counter
        self.describe = describe

    def expand(self, elements):
        results, failed = (elements
                           | "Batches" >> RunInference(self.batched).with_exception_handling())
        retried, failed_alone = (
            failed.failed_inferences
            | "ElementsOfFailedBatches" >> beam.FlatMap(_elements_of_failed_batch)
            | "OneByOne" >> RunInference(self.single).with_exception_handling())
        dead_letters = (failed_alone.failed_inferences
                        | "DeadLetters" >> beam.FlatMap(_dead_letter, self.counter,
                                                        self.describe))
        return (results, retried) | "Results" >> beam.Flatten(), dead_letters
