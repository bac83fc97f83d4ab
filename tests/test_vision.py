"""Tests for course_lib.vision: IoU, NMS, COCO AP against pycocotools, the detector pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import vision as V


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 50, size=(n, 2))
    wh = rng.uniform(1, 20, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _iou_loop(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = w * h
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _nms_brute(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(_iou_loop(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= thr for k in keep):
            keep.append(i)
    return keep


def test_iou_matches_loop_and_known_values() -> None:
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 20)
    np.testing.assert_allclose(V.iou(a, b), _iou_loop(a, b), atol=1e-12)
    assert V.iou([[0, 0, 2, 2]], [[1, 1, 3, 3]])[0, 0] == pytest.approx(1 / 7)
    assert V.iou([[0, 0, 1, 1]], [[1, 0, 2, 1]])[0, 0] == 0.0          # touching edges: no overlap
    assert V.iou(a, a).diagonal() == pytest.approx(np.ones(30))
    assert V.iou(torch.tensor(a), b).shape == (30, 20)


def test_iou_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        V.iou(np.zeros((3, 5)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="inverted"):
        V.iou([[5, 5, 1, 1]], [[0, 0, 2, 2]])


def test_nms_matches_brute_force_and_is_idempotent() -> None:
    rng = np.random.default_rng(1)
    for thr in (0.0, 0.3, 0.5, 0.7, 1.0):
        boxes = _random_boxes(rng, 60)
        scores = rng.integers(0, 20, size=60).astype(float)             # ties on purpose
        keep = V.nms(boxes, scores, thr)
        assert keep.tolist() == _nms_brute(boxes, scores, thr)
        again = V.nms(boxes[keep], scores[keep], thr)
        assert again.tolist() == list(range(len(keep)))


def test_nms_bad_input() -> None:
    with pytest.raises(ValueError, match="scores"):
        V.nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        V.nms(np.zeros((3, 4)), np.zeros(3), 1.5)


def test_dataset_is_seeded_and_boxes_inside() -> None:
    d1, d2 = V.make_detection_set(20, seed=3), V.make_detection_set(20, seed=3)
    assert np.array_equal(d1.images, d2.images)
    for b in d1.boxes:
        assert (b[:, :2] >= 0).all() and (b[:, :2] + b[:, 2:] <= 64).all()
    with pytest.raises(ValueError):
        V.make_detection_set(0)


def _perturbed(gt: V.DetectionSet, seed: int) -> V.Detections:
    rng = np.random.default_rng(seed)
    boxes, scores, labels = [], [], []
    for b, lab in zip(gt.boxes, gt.labels):
        keep = rng.random(len(b)) > 0.2                                 # misses
        bb = b[keep] + rng.normal(0, 2.0, size=(keep.sum(), 4))
        bb[:, 2:] = np.maximum(bb[:, 2:], 1.0)
        ll = lab[keep].copy()
        flip = rng.random(len(ll)) < 0.1                                # wrong class
        ll[flip] = (ll[flip] + 1) % 3
        extra = rng.integers(0, 3)                                      # false positives
        fb = np.concatenate([rng.uniform(0, 50, (extra, 2)), rng.uniform(4, 15, (extra, 2))], axis=1)
        boxes.append(np.concatenate([bb, fb]).astype(np.float64))
        scores.append(np.round(rng.random(len(bb) + extra), 2))         # ties on purpose
        labels.append(np.concatenate([ll, rng.integers(0, 3, extra)]))
    return V.Detections(boxes, scores, labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_equals_pycocotools(seed: int) -> None:
    pytest.importorskip("pycocotools")
    gt = V.make_detection_set(40, seed=seed)
    dets = _perturbed(gt, seed)
    ours, ref = V.average_precision(gt, dets), V.pycocotools_map50(gt, dets)
    assert ours["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
    np.testing.assert_allclose(ours["per_class"], ref["per_class"], atol=1e-12)


def test_average_precision_perfect_and_empty() -> None:
    gt = V.make_detection_set(10, seed=5)
    perfect = V.Detections([b.astype(float) for b in gt.boxes], [np.ones(len(b)) for b in gt.boxes], list(gt.labels))
    assert V.average_precision(gt, perfect)["mAP"] == pytest.approx(1.0)
    empty = V.Detections([np.zeros((0, 4))] * 10, [np.zeros(0)] * 10, [np.zeros(0, int)] * 10)
    assert V.average_precision(gt, empty)["mAP"] == 0.0
    with pytest.raises(ValueError, match="images"):
        V.average_precision(gt, V.Detections([], [], []))


def test_detector_pipeline_shapes_and_loss_decreases() -> None:
    torch.manual_seed(0)
    data = V.make_detection_set(64, seed=0)
    model = V.TinyCenterNet(16)
    assert model(torch.from_numpy(data.images[:2])).shape == (2, 7, 16, 16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = V.train_detector(model, data, seconds=30, max_steps=15, batch_size=16)
    finally:
        torch.set_num_threads(threads)
    assert np.mean(run["losses"][-5:]) < run["losses"][0]
    dets = V.detect(model, data.images[:8])
    assert len(dets.boxes) == 8 and all(b.shape[1] == 4 for b in dets.boxes)


def test_efficiency_helpers() -> None:
    torch.manual_seed(0)
    model = V.TinyCenterNet(16)
    img = V.make_detection_set(2, seed=0).images
    sparse = V.magnitude_prune(model, 0.5)
    assert V.n_params(sparse, nonzero=True) < 0.6 * V.n_params(model)
    assert V.count_flops(sparse, img[:1]) == V.count_flops(model, img[:1])
    small = V.prune_channels(model, 0.5)
    assert V.count_flops(small, img[:1]) < 0.4 * V.count_flops(model, img[:1])
    assert small(torch.from_numpy(img)).shape == (2, 7, 16, 16)
    q, codes = V.quantize_weights_int8(model)
    assert all(c.dtype == torch.int8 and int(c.abs().max()) <= 127 for c in codes.values())
    with pytest.raises(ValueError):
        V.magnitude_prune(model, 1.0)
    with pytest.raises(ValueError):
        V.prune_channels(model, 0.0)


# ----------------------------------------------------------------------------- active learning
class _PoolNet(torch.nn.Module):
    """Mirror-equivariant stand-in for a detector: 4x4 average pooling, 7 output channels."""

    def __init__(self, shift: int = 0):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        y = torch.nn.functional.avg_pool2d(x, 4).repeat(1, 7, 1, 1)
        return torch.roll(y, self.shift, dims=-1) if self.shift else y


def test_concat_keeps_order_and_rejects_mismatched_images():
    a, b = V.make_detection_set(3, seed=1), V.make_detection_set(2, seed=2)
    c = V.DetectionSet.concat(a, b)
    assert len(c) == 5 and np.array_equal(c.images[3:], b.images) and c.boxes[0] is a.boxes[0]
    with pytest.raises(ValueError, match="shapes differ"):
        V.DetectionSet.concat(a, V.make_detection_set(1, size=32, max_side=16))
    with pytest.raises(ValueError, match="at least one"):
        V.DetectionSet.concat()


def test_flip_disagreement_is_zero_for_a_mirror_equivariant_model():
    images = V.make_detection_set(6, seed=3).images
    assert np.allclose(V.flip_disagreement(_PoolNet(), images), 0.0, atol=1e-5)
    assert np.all(V.flip_disagreement(_PoolNet(shift=1), images) > 0.1)   # a shift breaks the symmetry
    lc = V.least_confidence(_PoolNet(), images)
    assert lc.shape == (6,) and np.all((lc >= 0) & (lc <= 1))


def test_image_losses_match_the_training_loss_of_one_image():
    data = V.make_detection_set(4, seed=4)
    torch.manual_seed(0)
    model = V.TinyCenterNet(8).eval()
    per_image = V.image_losses(model, data)
    one = data.subset([2])
    heat, idx, reg = V.centernet_targets(one)
    with torch.no_grad():
        expected = float(V.centernet_loss(model(torch.from_numpy(one.images)), heat, idx, reg))
    assert per_image.shape == (4,) and per_image[2] == pytest.approx(expected, rel=1e-5)


def test_select_for_labelling_takes_the_top_scores_with_stable_ties():
    assert V.select_for_labelling([0.1, 0.9, 0.5, 0.9], 3).tolist() == [1, 3, 2]
    with pytest.raises(ValueError, match="budget"):
        V.select_for_labelling([0.1, 0.2], 3)
    with pytest.raises(ValueError, match="finite"):
        V.select_for_labelling([0.1, float("nan")], 1)
