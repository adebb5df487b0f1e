"""One seed of a pooled k-fold variant as one run: its fold models' per-picture evaluations, pooled.

Every fold model was scored on its own val pictures (`intervals.run_pictures`); the seed's evaluation is
the union of them (`msr.evaluation.pooling.pool_pictures`), each picture with the detections of the
model of its fold, so that the picture bootstrap resamples every picture of the cross-validation.
"""

from __future__ import annotations

from collections.abc import Sequence

from msr.errors import EvaluationError
from msr.evaluation.pooling import pool_pictures
from msr.evaluation.ties import tie_bounds, tied_detections
from msr.studies.intervals import RunPictures


def pool_fold_runs(folds: Sequence[RunPictures | None]) -> RunPictures | None:
    """Return the RunPictures of one seed's fold runs pooled (None when a fold saved no segm results).

    The class-score ranking and the bbox evaluation are pooled when every fold has them; the trunk key is
    the folds' keys joined (None unless every fold has one); ties are counted on the pooled ranking."""
    if not folds or any(f is None for f in folds):
        return None
    runs = [f for f in folds if f is not None]
    if len({r.seed for r in runs}) != 1:
        raise EvaluationError(f"the folds of one pooled seed have seeds {sorted({r.seed for r in runs})}")

    def pooled(evaluations: list) -> object:
        return None if any(e is None for e in evaluations) else pool_pictures(evaluations)

    by_mask = pool_pictures([r.by_mask_score for r in runs])
    by_class = pooled([r.by_class_score for r in runs])
    bbox = pooled([r.bbox for r in runs])
    trunks = [r.trunk for r in runs]
    trunk = None if any(t is None for t in trunks) else "+".join(str(t) for t in trunks)
    class_ranked = by_class if by_class is not None else by_mask
    return RunPictures(
        runs[0].seed, trunk, by_mask, by_class, bbox, tied_detections(class_ranked), tie_bounds(class_ranked)
    )
