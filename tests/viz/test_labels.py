"""Overlay labels people can read: text scaled to the picture, a background behind each label, labels
inside the picture and off each other, small pictures enlarged; panels captioned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msr.viz.labels import enlargement_for, place_labels, text_size_for
from msr.viz.overlays import draw_instances, side_by_side


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_stay_inside_the_picture_and_off_each_other():
    # three boxes at the same corner (labels would sit on each other), one at the top edge, one at the right
    anchors = [(10, 40, 60, 90), (12, 42, 70, 95), (11, 41, 50, 80), (30, 0, 90, 30), (190, 100, 200, 120)]
    sizes = [(80, 14)] * len(anchors)
    rects = place_labels(anchors, sizes, height=200, width=200)
    for x0, y0, x1, y1 in rects:
        assert x0 >= 0 and x1 <= 200 and y0 >= 0 and y1 <= 200
    assert not any(overlap(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :])
    assert rects[0] == (10, 26, 90, 40)  # the first sits right above its box
    assert rects[3][1] >= 0  # no room above the top edge: inside its box


@pytest.mark.parametrize("side", [128, 800, 2048])
def test_text_is_sized_to_the_picture_and_drawn_on_a_background(side):
    size = text_size_for(side, side)
    factor = enlargement_for(side, side)
    assert factor == (4 if side == 128 else 1)  # a 128-px picture is drawn 4x larger (512 px)
    drawn_side = side * factor
    assert text_size_for(drawn_side, drawn_side) >= 11 and text_size_for(2048, 2048) > text_size_for(800, 800)
    assert size <= 64
    picture = np.full((drawn_side, drawn_side, 3), 90, dtype=np.uint8)
    box = torch.tensor([[drawn_side * 0.3, drawn_side * 0.4, drawn_side * 0.6, drawn_side * 0.7]])
    out = draw_instances(picture, box, None, [3], ["disc box=0.91 mask=0.77"])
    label_size = text_size_for(drawn_side, drawn_side)
    top = int(drawn_side * 0.4)
    band = out[top - label_size : top, int(drawn_side * 0.3) : int(drawn_side * 0.3) + 4 * label_size]
    color = np.array([0, 130, 200])  # the palette's colour of label 3: the label's background
    assert (np.abs(band.astype(int) - color).sum(-1) == 0).mean() > 0.4
    assert (band == 255).all(-1).sum() > label_size  # white text on the dark blue label


def test_panels_are_captioned_ground_truth_and_prediction():
    left = np.full((100, 120, 3), 50, dtype=np.uint8)
    plain = side_by_side(left, left, gap=2)
    titled = side_by_side(left, left, gap=2, titles=("ground truth", "prediction"))
    assert plain.shape == (100, 242, 3)
    assert titled.shape[0] > 100 and titled.shape[1] == 242
    strip = titled[: titled.shape[0] - 100]
    assert (strip == 255).mean() > 0.8 and (strip < 100).any()  # white strip with dark text on it
