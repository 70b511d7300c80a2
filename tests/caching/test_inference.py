"""RunInference over our SavedModels: every call runs one batch size, padded, so an
element's result does not depend on the batch it landed in."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.testing.util import assert_that, equal_to

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf.beam_runner import pipeline_options
from ppm_tf.caching.inference import InferenceWithDeadLetters, SavedModelHandler

class Lengths(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
    def serve(self, words):
        return {"length": tf.cast(tf.strings.length(words), tf.float32)}


@pytest.fixture(scope="module")
def lengths_model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("lengths"))
    module = Lengths()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def lengths_fn(model, batch, inference_args, model_id=None):
    """Fails the whole batch on the word "boom", as a model fails on a bad input."""
    beam.metrics.Metrics.counter("test_inference", f"calls_of_{len(batch)}_rows").inc()
    if b"boom" in batch:
        raise ValueError("boom")
    lengths = model.signatures["serving_default"](words=tf.constant(list(batch)))["length"]
    return [PredictionResult(word, float(length), model_id)
            for word, length in zip(batch, lengths.numpy())]


def test_a_short_batch_runs_padded_to_the_batch_size_and_returns_its_own_results(
        lengths_model):
    seen = []

    def recording_fn(model, batch, inference_args, model_id=None):
        seen.append(list(batch))
        return lengths_fn(model, batch, inference_args, model_id)

    handler = SavedModelHandler(lengths_model, recording_fn, batch_size=8)
    model = handler.load_model()
    results = handler.run_inference([b"ab", b"abcd", b"a"], model)
    assert [(result.example, result.inference) for result in results] == [
        (b"ab", 2.0), (b"abcd", 4.0), (b"a", 1.0)]
    assert seen == [[b"ab", b"abcd", b"a"] + [b"ab"] * 5]  # padded by the first element
    with pytest.raises(ValueError, match="batch_size"):
        SavedModelHandler(lengths_model, recording_fn, batch_size=0)


def test_every_call_of_a_pipeline_runs_the_batch_size_and_a_failing_element_is_dead_lettered(
        lengths_model):
    words = [b"w" * length for length in range(1, 11)] + [b"boom"]
    pipeline = beam.Pipeline(options=pipeline_options(["--runner=DirectRunner"]))
    results, dead = (
        pipeline
        | beam.Create([(word.decode(), word) for word in words])
        | InferenceWithDeadLetters(
            lambda size: SavedModelHandler(lengths_model, lengths_fn, batch_size=size), 4,
            ("test_inference", "dead_lettered"), lambda key: [{"word": key}]))
    assert_that(results | beam.MapTuple(lambda key, result: (key, result.inference)),
                equal_to([(word.decode(), float(len(word))) for word in words[:-1]]),
                label="results")
    assert_that(dead | beam.Map(lambda record: record["word"]), equal_to(["boom"]),
                label="dead")
    outcome = pipeline.run()
    outcome.wait_until_finish()
    calls = {counter.key.metric.name: counter.committed
             for counter in outcome.metrics().query(
                 beam.metrics.MetricsFilter().with_namespace("test_inference"))["counters"]
             if counter.key.metric.name.startswith("calls_of_")}
    # Batches of 4 (11 words: at least 3); the elements of the batch that failed run again
    # one at a time.
    assert set(calls) == {"calls_of_4_rows", "calls_of_1_rows"}, calls
    assert calls["calls_of_4_rows"] >= 3 and 1 <= calls["calls_of_1_rows"] <= 4
