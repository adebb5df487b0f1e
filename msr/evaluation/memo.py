"""Evaluation steps computed once for the jobs of a shared head pass, which score the same detections.

The jobs of a head pass (msr.studies.head_stage) score identical boxes, masks and class scores; only
their mask scores (class score × each head's predicted IoU) differ. An `EvaluationMemo` shared by their
evaluators keeps what an evaluation step computed under a fingerprint of exactly the inputs that step
reads, so the next job's identical step reuses it: the bbox evaluation, the true IoU of every mask, the
rankings by class score and by class score × true IoU (`rescoring_metrics`), and the per-picture
evaluation of the class-score ranking (the baseline of the rescoring gain's bootstrap). A step whose
inputs differ in any value is computed again, so a memo never changes a number.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def fingerprint(inputs: Any) -> str:
    """Return a digest of picklable `inputs` (result lists, ids, flags): equal for equal values."""
    return hashlib.blake2b(pickle.dumps(inputs, protocol=5), digest_size=16).hexdigest()


class EvaluationMemo:
    """Values of evaluation steps by (step, fingerprint of the step's inputs)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], Any] = {}
        self.hits = 0

    def get(self, step: str, inputs: Any, compute: Callable[[], T]) -> T:
        """Return the value of `step` on `inputs`: remembered, or `compute()` (then remembered)."""
        key = (step, fingerprint(inputs))
        if key in self._values:
            self.hits += 1
        else:
            self._values[key] = compute()
        return self._values[key]

    def clear(self) -> None:
        """Forget every value (a new evaluation starts)."""
        self._values.clear()


def remember(
    memo: EvaluationMemo | None, step: str, inputs: Callable[[], Any], compute: Callable[[], T]
) -> T:
    """Return `compute()` through `memo` (without one, computed; `inputs()` is then not built)."""
    if memo is None:
        return compute()
    return memo.get(step, inputs(), compute)
