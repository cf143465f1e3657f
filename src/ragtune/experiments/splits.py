"""Held-out queries. With many configurations the best mean is biased upward (the winner's curse): a sweep that
names a ``query_split`` chooses its winner on the dev queries only, and reports and promotes it by its score on the
test queries, which played no part in the choice.

The split is deterministic by query id (a hash of the seed and the id, so adding queries never moves the others),
or an explicit list of test ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator


class QuerySplit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dev: float | None = Field(None, gt=0, lt=1, description="share of the queries the winner is chosen on (by id hash)")
    seed: int = Field(0, description="changes which queries a dev share picks")
    test: list[str] | None = Field(None, min_length=1, description="explicit test query ids; the other queries are dev")

    @model_validator(mode="after")
    def _one_way(self) -> QuerySplit:
        if (self.dev is None) == (self.test is None):
            raise ValueError("give either dev (a share, e.g. 0.7) or test (a list of query ids)")
        return self

    def assign(self, query_ids: Iterable[str]) -> dict[str, str]:
        """query id -> "dev" or "test"."""
        if self.test is not None:
            test = set(self.test)
            return {q: "test" if q in test else "dev" for q in query_ids}
        return {q: "dev" if unit(self.seed, q) < self.dev else "test" for q in query_ids}


def unit(seed: int, query_id: str) -> float:
    """A number in [0, 1) fixed by the seed and the query id."""
    digest = hashlib.sha256(f"{seed}:{query_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
