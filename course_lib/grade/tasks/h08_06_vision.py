"""Tests for the exercise of lesson 08.06 (computer vision at scale): ``iou`` and ``nms``.

The tasks, as the exercise states them:

* ``iou(boxes_a, boxes_b)``: boxes (n, 4) and (m, 4) in xyxy pixels, continuous
  coordinates (area ``(x1 - x0) * (y1 - y0)``, no "+1"); returns the (n, m)
  pairwise IoU as a numpy array, 0 where the union is empty.
* ``nms(boxes, scores, iou_threshold)``: greedy NMS from the highest score down
  (ties: lower index first), a box is dropped when its IoU with a kept box is
  strictly greater than the threshold; returns the kept indices (int array)
  sorted by decreasing score.

Reference routes: plain Python loops below, independent of ``course_lib.vision``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_08_06 = "08_hardware/06_cv_at_scale_capstone"


def _iou_pair(p: np.ndarray, q: np.ndarray) -> float:
    w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = w * h
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else 0.0


def _iou_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[_iou_pair(p, q) for q in b] for p in a]).reshape(len(a), len(b))


def _nms_ref(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(_iou_pair(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def _boxes(seed: int, n: int, *, integer: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 40, (n, 2)) if integer else rng.uniform(0, 40, (n, 2))
    wh = rng.integers(1, 20, (n, 2)) if integer else rng.uniform(0.5, 20, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float64)


def _call_iou(fn: Callable[..., Any], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    got = np.asarray(fn(a.copy(), b.copy()), dtype=np.float64)
    if got.shape != (len(a), len(b)):
        raise TestFailure(f"expected an IoU matrix of shape (n, m) = {(len(a), len(b))}, got {got.shape}")
    return got


def _expect_iou(fn: Callable[..., Any], a: np.ndarray, b: np.ndarray) -> None:
    got, want = _call_iou(fn, a, b), _iou_ref(a, b)
    if not np.allclose(got, want, atol=1e-9):
        i, j = (int(v) for v in np.argwhere(~np.isclose(got, want, atol=1e-9))[0])
        raise TestFailure(f"IoU of a[{i}] = {a[i].tolist()} and b[{j}] = {b[j].tolist()} is {got[i, j]:.6f}, expected {want[i, j]:.6f}")


iou_task = register("hardware.iou", function="iou", title="Pairwise IoU of xyxy boxes", lesson=LESSON_08_06, points=1, timeout_s=30)


@iou_task.test("returns an (n, m) matrix", hint="compare every box of boxes_a with every box of boxes_b: broadcast a[:, None, :] against b[None, :, :]")
def _iou_shape(fn: Callable[..., Any]) -> None:
    _call_iou(fn, _boxes(0, 5), _boxes(1, 3))


@iou_task.test("hand-computed values", hint="intersection width is min(x1) - max(x0), clipped at 0; the union is area_a + area_b - intersection")
def _iou_hand(fn: Callable[..., Any]) -> None:
    a = np.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 4.0]])
    b = np.array([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    got = _call_iou(fn, a, b)
    want = np.array([[1 / 7, 1.0], [4 / 16, 4 / 16]])
    if not np.allclose(got, want, atol=1e-9):
        raise TestFailure(f"for a = {a.tolist()}, b = {b.tolist()} expected {want.round(4).tolist()}, got {got.round(4).tolist()}")


@iou_task.test("disjoint and touching boxes give 0", hint="clip the intersection width and height at 0 separately: two negative sides must not multiply into a positive area")
def _iou_disjoint(fn: Callable[..., Any]) -> None:
    a = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = np.array([[1.0, 0.0, 2.0, 1.0], [5.0, 5.0, 6.0, 6.0]])
    _expect_iou(fn, a, b)


@iou_task.test("continuous coordinates: no +1 in widths", hint="COCO convention: width = x1 - x0, not x1 - x0 + 1 (the old PASCAL VOC pixel convention)")
def _iou_noplus1(fn: Callable[..., Any]) -> None:
    _expect_iou(fn, _boxes(2, 12, integer=True), _boxes(3, 9, integer=True))


@iou_task.test("random float boxes against a loop reference", hint="the result is symmetric in the boxes' roles, in [0, 1], and 1 on identical boxes")
def _iou_random(fn: Callable[..., Any]) -> None:
    _expect_iou(fn, _boxes(4, 40), _boxes(5, 30))
    a = _boxes(6, 10)
    _expect_iou(fn, a, a)


@iou_task.test("empty inputs", hint="with no boxes on one side the result is an empty (n, 0) or (0, m) matrix, not an error")
def _iou_empty(fn: Callable[..., Any]) -> None:
    _call_iou(fn, _boxes(7, 4), np.zeros((0, 4)))
    _call_iou(fn, np.zeros((0, 4)), _boxes(7, 4))


def _call_nms(fn: Callable[..., Any], boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    got = fn(boxes.copy(), scores.copy(), thr)
    arr = np.asarray(got)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TestFailure(f"expected a 1-D array of integer indices, got {arr.dtype} of shape {arr.shape}")
    return [int(v) for v in arr]


def _expect_nms(fn: Callable[..., Any], boxes: np.ndarray, scores: np.ndarray, thr: float) -> None:
    got, want = _call_nms(fn, boxes, scores, thr), _nms_ref(boxes, scores, thr)
    if sorted(got) != sorted(want):
        extra, missing = sorted(set(got) - set(want))[:5], sorted(set(want) - set(got))[:5]
        raise TestFailure(f"at iou_threshold={thr}: kept {len(got)} boxes, expected {len(want)}; wrongly kept {extra}, wrongly dropped {missing}")
    if got != want:
        raise TestFailure(f"at iou_threshold={thr}: the right boxes, in the wrong order: got {got[:8]}..., expected {want[:8]}...")


nms_task = register("hardware.nms", function="nms", title="Greedy non-maximum suppression", lesson=LESSON_08_06, points=2, timeout_s=60)


@nms_task.test("three boxes by hand", hint="visit boxes by decreasing score; a box is suppressed only by a box that was KEPT, not by one that was itself suppressed")
def _nms_hand(fn: Callable[..., Any]) -> None:
    boxes = np.array([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [2.0, 0, 12, 10], [30.0, 30, 40, 40]])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    _expect_nms(fn, boxes, scores, 0.7)        # box 1 is suppressed by 0; box 2 overlaps 0 by 0.67 < 0.7: kept


@nms_task.test("kept indices sorted by decreasing score", hint="return indices into the ORIGINAL arrays, ordered by score, not positions in a sorted copy")
def _nms_order(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(0)
    boxes = _boxes(10, 30)
    _expect_nms(fn, boxes, rng.random(30), 0.5)


@nms_task.test("strictly greater than the threshold suppresses", hint="drop a box when IoU > iou_threshold; a box at exactly the threshold survives")
def _nms_boundary(fn: Callable[..., Any]) -> None:
    boxes = np.array([[0.0, 0, 2, 2], [1.0, 0, 3, 2]])        # IoU exactly 1/3
    _expect_nms(fn, boxes, np.array([0.9, 0.8]), 1 / 3)
    _expect_nms(fn, boxes, np.array([0.9, 0.8]), 0.3)


@nms_task.test("ties in score: lower index first", hint="use a stable sort of -scores (np.argsort(-scores, kind='stable')), so equal scores keep their input order")
def _nms_ties(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(1)
    boxes = _boxes(11, 40)
    _expect_nms(fn, boxes, rng.integers(0, 5, 40).astype(float), 0.3)


@nms_task.test("thresholds 0 and 1 against a loop reference", hint="threshold 1.0 keeps every box (no IoU exceeds 1); threshold 0.0 keeps only boxes that overlap no kept box at all")
def _nms_extremes(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(2)
    boxes = _boxes(12, 50)
    for thr in (0.0, 1.0, 0.45):
        _expect_nms(fn, boxes, rng.random(50), thr)


@nms_task.test("idempotent: NMS of the kept boxes keeps them all", hint="after NMS no two kept boxes overlap above the threshold, so a second pass must change nothing")
def _nms_idem(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(3)
    boxes, scores = _boxes(13, 60), rng.random(60)
    keep = _call_nms(fn, boxes, scores, 0.5)
    again = _call_nms(fn, boxes[keep], scores[keep], 0.5)
    if again != list(range(len(keep))):
        raise TestFailure(f"second NMS pass over the {len(keep)} kept boxes returned {len(again)} indices {again[:8]}...")
