"""Ploomber tasks of pipeline.yaml: each calls one step of ragtune.production.pipeline and holds no logic.

Ploomber passes ``product`` (and ``upstream``, the products of the tasks before) plus the params of pipeline.yaml.
The ``state`` params exist only so that Ploomber sees the corpus, the evaluation set or the release change.
"""

from ragtune.production import pipeline as steps

corpus_state = steps.corpus_state
dataset_state = steps.dataset_state
release_state = steps.release_state
pointer_state = steps.pointer_state


def ingest(product, corpus, home, release, state):
    steps.ingest(product, corpus, home, release)


def index(product, upstream, home, release):
    steps.index(product, upstream["ingest"], home, release)


def evaluate(product, upstream, dataset, home, release, state, release_state):
    steps.evaluate(product, upstream["index"], dataset, home, release)


def gate(product, upstream, release, state):
    steps.gate(product, upstream["evaluate"], release)


def publish(product, upstream, home, release, pointer):
    steps.publish(product, upstream["ingest"], upstream["index"], upstream["gate"], home, release)


def report(product, upstream, tracking):
    steps.report({k: str(product[k]) for k in ("md", "html", "plot")}, upstream["ingest"], upstream["evaluate"],
                 upstream["gate"], upstream["publish"], tracking or None)
