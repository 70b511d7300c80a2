"""Vocabularies: one file per id field, most frequent first, deterministic order.

Policy for the long tail: a token enters its vocabulary when it occurs at least
``min_count`` times (user and item ids: impressions in the pretrain and train splits, never
eval; category, brand, entity, content: items in the catalogue). ``entity`` holds the image
entities (what entity prediction predicts); ``content`` the content tokens IDRec embeds
(``features.content_tokens``: entities and attributes). Everything else, including ids first
seen later, is hashed by the models into ``oov_buckets`` shared buckets
(``tf.keras.layers.StringLookup(num_oov_indices=oov_buckets)``), so the embedding tables
stay bounded however long the tail grows.
"""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ppm_tf import features
from ppm_tf.work_layout import WorkLayout

EXAMPLE_VOCABULARIES = (features.USER_ID, features.ITEM_ID)
CATALOGUE_VOCABULARIES = (features.CATEGORY, features.BRAND, "entity",
                          features.CONTENT_VOCABULARY)
VOCABULARIES = EXAMPLE_VOCABULARIES + CATALOGUE_VOCABULARIES
TRAINING_SPLITS = ("pretrain", "train")


def _catalogue_tokens(item):
    yield features.CATEGORY, item[features.CATEGORY]
    if item[features.BRAND]:
        yield features.BRAND, item[features.BRAND]
    for entity in set(item[features.ENTITIES]):
        yield "entity", entity
    for token in features.content_tokens(item[features.ENTITIES],
                                         json.loads(item[features.ATTRS_JSON])):
        yield features.CONTENT_VOCABULARY, token


def _write_vocabulary(element, layout: WorkLayout):
    name, grouped = element
    counted = sorted(grouped["tokens"], key=lambda token_count: (-token_count[1], token_count[0]))
    with FileSystems.create(layout.vocab(name)) as handle:
        handle.write("".join(token + "\n" for token, _ in counted).encode("utf-8"))
    yield name, len(counted)


class Vocabularies(beam.PTransform):
    """{"examples"} and/or {"items"} -> writes WORK/vocab/<name>.txt for the vocabularies
    they make (``EXAMPLE_VOCABULARIES`` from examples, ``CATALOGUE_VOCABULARIES`` from items:
    the events job and the catalogue job); outputs (name, size)."""

    def __init__(self, layout: WorkLayout, min_count: int):
        super().__init__()
        self.layout = layout
        self.min_count = min_count

    def expand(self, inputs):
        tokens, vocabulary_names = [], []
        if "examples" in inputs:
            tokens.append(inputs["examples"]
                          | "TrainingSplits" >> beam.Filter(
                              lambda example: example[features.SPLIT] in TRAINING_SPLITS)
                          | "IdTokens" >> beam.FlatMap(
                              lambda example: [(name, example[name])
                                               for name in EXAMPLE_VOCABULARIES]))
            vocabulary_names.extend(EXAMPLE_VOCABULARIES)
        if "items" in inputs:
            tokens.append(inputs["items"] | "CatalogueTokens" >> beam.FlatMap(_catalogue_tokens))
            vocabulary_names.extend(CATALOGUE_VOCABULARIES)
        min_count = self.min_count
        frequent = (tuple(tokens)
                    | "AllTokens" >> beam.Flatten()
                    | "Count" >> beam.combiners.Count.PerElement()
                    | "MinCount" >> beam.Filter(lambda token_count: token_count[1] >= min_count)
                    | "ByName" >> beam.Map(
                        lambda token_count: (token_count[0][0], (token_count[0][1],
                                                                 token_count[1]))))
        # Every vocabulary gets a file, even an empty one (e.g. MovieLens has no brands).
        names = tokens[0].pipeline | "Names" >> beam.Create(
            [(name, None) for name in vocabulary_names])
        return ({"tokens": frequent, "names": names}
                | "Group" >> beam.CoGroupByKey()
                | "Write" >> beam.FlatMap(_write_vocabulary, layout=self.layout))
