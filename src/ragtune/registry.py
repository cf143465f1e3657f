"""Backends by name: one ``Registry`` per family (chunkers, embedders, fusions, re-rankers, generators).

A backend module registers its factories (``@EMBEDDERS.register("minilm")``; ``prefix=True`` registers the
``name:<model>`` forms, such as ``openai:text-embedding-3-small``). Each registry knows the module that fills it and
imports that module the first time a name is looked up, so a configuration is validated against the registries
without importing any backend itself, and a third-party module can add a backend by registering into one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class Registry:
    def __init__(self, kind: str, home: str):
        self.kind = kind  # what a name names, for messages: "embedding model"
        self.home = home  # the module whose import registers the built-in backends
        self._exact: dict[str, Callable[..., Any]] = {}
        self._prefixed: dict[str, Callable[..., Any]] = {}
        self._hints: dict[str, str] = {}

    def register(self, name: str, prefix: bool = False, hint: str = "<model>"):
        """Decorator registering ``factory`` under ``name``, or under the ``name:<...>`` forms when ``prefix``
        (``hint`` says what goes after the colon, for messages)."""

        def deco(factory):
            (self._prefixed if prefix else self._exact)[name] = factory
            self._hints[name] = hint
            return factory

        return deco

    def _loaded(self) -> Registry:
        importlib.import_module(self.home)
        return self

    def names(self) -> list[str]:
        self._loaded()
        return sorted(self._exact) + [f"{p}:{self._hints[p]}" for p in sorted(self._prefixed)]

    def check(self, name: str) -> None:
        """ValueError naming what is known when ``name`` is not a registered backend."""
        self.lookup(name)

    def lookup(self, name: str) -> tuple[Callable[..., Any], str | None]:
        """(factory, the part after ``prefix:`` or None for an exact name)."""
        self._loaded()
        if name in self._exact:
            return self._exact[name], None
        backend, sep, rest = name.partition(":")
        if sep and rest and backend in self._prefixed:
            return self._prefixed[backend], rest
        raise ValueError(f"unknown {self.kind} {name!r}; expected one of {', '.join(self.names())}")


CHUNKERS = Registry("chunking strategy", "ragtune.chunking")
EMBEDDERS = Registry("embedding model", "ragtune.embedding")
LATE_INTERACTION = Registry("late-interaction model", "ragtune.late")
FUSIONS = Registry("fusion", "ragtune.retrieval")
RERANKERS = Registry("reranker", "ragtune.rerank")
GENERATORS = Registry("generator", "ragtune.generation")
