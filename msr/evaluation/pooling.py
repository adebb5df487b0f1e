"""One per-picture evaluation from several on disjoint pictures: the folds of a k-fold cross-validation.

Each fold's model is scored on its own val pictures; pooled, every picture keeps the detections of the
model of its fold, and COCO AP of the pool is COCOeval's AP on the union of the folds' val sets with the
union of their results. Pictures are put in order of id and each category's detections in picture
order (within a picture, in the order they were evaluated), which is the order COCOeval's `accumulate`
ranks ties of score in, so the pooled AP equals COCOeval's on the union exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from msr.errors import EvaluationError
from msr.evaluation.bootstrap import CategoryEval, PerImageEval


def pool_pictures(evaluations: Sequence[PerImageEval]) -> PerImageEval:
    """Return the PerImageEval of the union of `evaluations`' pictures (each picture with its own
    detections and ground truth); EvaluationError when they share a picture id or differ in categories."""
    if not evaluations:
        raise EvaluationError("pooling needs at least one evaluation")
    first = evaluations[0]
    for other in evaluations[1:]:
        if other.category_ids != first.category_ids or len(other.categories) != len(first.categories):
            raise EvaluationError(
                f"pooled folds must have the same categories: {list(first.category_ids)} and "
                f"{list(other.category_ids)}"
            )
    ids = np.concatenate([e.image_ids for e in evaluations])
    if np.unique(ids).shape[0] != ids.shape[0]:
        raise EvaluationError("pooled folds must have disjoint val pictures; some picture ids repeat")
    order = np.argsort(ids, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])  # the pooled index of every picture, by its place in `ids`
    offsets = np.cumsum([0] + [len(e.image_ids) for e in evaluations[:-1]])
    categories = []
    for k in range(len(first.categories)):
        parts = [e.categories[k] for e in evaluations]
        num_gt = np.concatenate([c.num_gt for c in parts])[order]
        det_image = rank[np.concatenate([c.det_image + o for c, o in zip(parts, offsets)])]
        keep = np.argsort(det_image, kind="stable")  # picture order, each picture's own order kept
        categories.append(
            CategoryEval(
                num_gt,
                det_image[keep],
                np.concatenate([c.det_score for c in parts])[keep],
                np.concatenate([c.tp for c in parts], axis=1)[:, keep],
                np.concatenate([c.fp for c in parts], axis=1)[:, keep],
            )
        )
    return PerImageEval(ids[order], tuple(categories), first.category_ids)
