"""Object detection from scratch: synthetic data, IoU, NMS, COCO mAP and a tiny CenterNet.

Lesson 08.06 (computer vision at scale).  Everything here is plain numpy or
core torch: no torchvision.  Box conventions:

* **xyxy** ``(x0, y0, x1, y1)`` in pixels, continuous coordinates: a box that
  covers pixel columns 3..6 inclusive is ``x0 = 3, x1 = 7`` and has width 4.
  Areas are ``(x1 - x0) * (y1 - y0)``, with **no "+1"** (the PASCAL VOC devkit
  and old Detectron code used ``x1 - x0 + 1``; COCO and pycocotools do not).
* **COCO / xywh** ``(x, y, w, h)``: the same box as ``(x0, y0, x1 - x0, y1 - y0)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

CLASSES = ("square", "circle", "triangle")


# ----------------------------------------------------------------------------- data
@dataclass
class DetectionSet:
    """Images and their ground truth.

    Attributes
    ----------
    images : (n, 1, H, W) float32 in [0, 1].
    boxes : list of n arrays (k_i, 4), xywh pixels (COCO format).
    labels : list of n int arrays (k_i,), class index into ``CLASSES``.
    """

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: Any) -> DetectionSet:
        idx = np.asarray(idx, dtype=int)
        return DetectionSet(self.images[idx], [self.boxes[i] for i in idx], [self.labels[i] for i in idx])

    @staticmethod
    def concat(*sets: DetectionSet) -> DetectionSet:
        """The images of several sets, in order, as one set."""
        if not sets:
            raise ValueError("concat needs at least one DetectionSet")
        if len({s.images.shape[1:] for s in sets}) != 1:
            raise ValueError(f"image shapes differ: {[s.images.shape[1:] for s in sets]}")
        return DetectionSet(np.concatenate([s.images for s in sets]), [b for s in sets for b in s.boxes],
                            [lab for s in sets for lab in s.labels])


def _draw(img: np.ndarray, cls: int, x0: int, y0: int, s: int, value: float) -> None:
    """Paint one filled shape of side/diameter ``s`` with top-left corner (x0, y0)."""
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    if cls == 0:                                   # square
        mask = np.ones((s, s), dtype=bool)
    elif cls == 1:                                 # circle
        mask = (xx - s / 2) ** 2 + (yy - s / 2) ** 2 <= (s / 2) ** 2
    else:                                          # triangle, apex up, base on the bottom row
        mask = np.abs(xx - s / 2) <= yy / 2
    region = img[y0:y0 + s, x0:x0 + s]
    region[mask] = value


def make_detection_set(n: int, *, size: int = 64, max_objects: int = 4, min_side: int = 8,
                       max_side: int = 22, noise: float = 0.08, seed: int = 0) -> DetectionSet:
    """A seeded synthetic detection set: noisy grey images with 1..``max_objects`` shapes.

    Each object is a filled square, circle or triangle of random side in
    [``min_side``, ``max_side``] pixels and random brightness in [0.45, 1.0];
    later shapes are painted over earlier ones (overlaps allowed).  The ground
    truth box is the shape's bounding square (xywh), the same whether or not it
    is partly hidden, like a human labeller's box.

    Parameters
    ----------
    n : number of images.
    size : image side in pixels.
    noise : std of the additive Gaussian pixel noise.
    """
    if n < 1 or size < max_side or not 1 <= min_side <= max_side or max_objects < 1:
        raise ValueError(f"need n >= 1, size >= max_side >= min_side >= 1, max_objects >= 1; got "
                         f"{n=}, {size=}, {min_side=}, {max_side=}, {max_objects=}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    boxes, labels = [], []
    for i in range(n):
        k = int(rng.integers(1, max_objects + 1))
        img = np.zeros((size, size), dtype=np.float32)
        b, lab = [], []
        for _ in range(k):
            cls = int(rng.integers(len(CLASSES)))
            s = int(rng.integers(min_side, max_side + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, size=2))
            _draw(img, cls, x0, y0, s, float(rng.uniform(0.45, 1.0)))
            b.append((x0, y0, s, s))
            lab.append(cls)
        img += rng.normal(0.0, noise, size=img.shape).astype(np.float32)
        images[i, 0] = np.clip(img, 0.0, 1.0)
        boxes.append(np.array(b, dtype=np.float32).reshape(-1, 4))
        labels.append(np.array(lab, dtype=np.int64))
    return DetectionSet(images, boxes, labels)


def xywh_to_xyxy(b: Any) -> np.ndarray:
    """(n, 4) xywh -> (n, 4) xyxy."""
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(b: Any) -> np.ndarray:
    """(n, 4) xyxy -> (n, 4) xywh."""
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


# ----------------------------------------------------------------------------- IoU and NMS
def _as_boxes(b: Any, name: str) -> np.ndarray:
    arr = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (n, 4) in xyxy, got {arr.shape}")
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise ValueError(f"{name} must be xyxy with x1 >= x0 and y1 >= y0 (got an inverted box: xywh passed as xyxy?)")
    return arr


def iou(boxes_a: Any, boxes_b: Any) -> np.ndarray:
    """Pairwise intersection over union of two sets of xyxy boxes.

    Parameters
    ----------
    boxes_a : (n, 4) xyxy.
    boxes_b : (m, 4) xyxy.

    Returns
    -------
    (n, m) float64, ``IoU[i, j] = |a_i ∩ b_j| / |a_i ∪ b_j|``; 0 where the union is empty.
    """
    a, b = _as_boxes(boxes_a, "boxes_a"), _as_boxes(boxes_b, "boxes_b")
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])          # (n, m, 2) top-left of the intersection
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])          # (n, m, 2) bottom-right
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: Any, scores: Any, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Visit boxes from the highest score down (ties: lower index first); keep a box
    unless its IoU with an already kept box is **greater than** ``iou_threshold``.

    Returns
    -------
    (k,) int64 indices of the kept boxes, sorted by decreasing score.
    """
    b = _as_boxes(boxes, "boxes")
    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    if s.shape != (len(b),):
        raise ValueError(f"scores must have shape ({len(b)},) to match boxes, got {s.shape}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    order = np.argsort(-s, kind="stable")
    overlaps = iou(b, b)
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i] > iou_threshold
    return np.array(keep, dtype=np.int64)


def batched_nms(boxes: Any, scores: Any, labels: Any, iou_threshold: float) -> np.ndarray:
    """NMS run separately per class label; kept indices sorted by decreasing score."""
    labels = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    keep = [np.flatnonzero(labels == c)[nms(np.asarray(boxes)[labels == c], s[labels == c], iou_threshold)]
            for c in np.unique(labels)]
    keep_all = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return keep_all[np.argsort(-s[keep_all], kind="stable")]


# ----------------------------------------------------------------------------- mAP
@dataclass
class Detections:
    """Detector output for a set of images: per image xywh boxes, scores, labels."""

    boxes: list[np.ndarray]
    scores: list[np.ndarray]
    labels: list[np.ndarray]


def average_precision(gt: DetectionSet | Any, dets: Detections, *, iou_threshold: float = 0.5,
                      max_dets: int = 100, n_classes: int = len(CLASSES)) -> dict[str, Any]:
    """COCO-style AP at one IoU threshold, area "all", as ``pycocotools.COCOeval`` computes it.

    Per class: in each image keep the ``max_dets`` highest-scoring detections
    (stable sort), match them greedily by score to the unmatched ground-truth
    box of highest IoU >= ``iou_threshold``; pool all images, sort by score,
    cumulate TP/FP into precision/recall, take the precision **envelope**
    (monotone non-increasing from the right) and read it at the 101 recall
    points 0, 0.01, ..., 1 (0 where recall is never reached).  AP is their mean;
    mAP the mean over classes that have ground truth.  ``gt`` needs ``.boxes``
    and ``.labels`` (xywh, class index); no crowd boxes.

    Returns
    -------
    dict with ``mAP`` (float), ``per_class`` ((n_classes,), NaN where a class has
    no ground truth) and ``precision`` ((101, n_classes) interpolated precision).
    """
    if len(gt.boxes) != len(dets.boxes):
        raise ValueError(f"gt has {len(gt.boxes)} images but dets has {len(dets.boxes)}")
    rec_thrs = np.linspace(0.0, 1.0, 101)
    per_class = np.full(n_classes, np.nan)
    prec_table = np.full((101, n_classes), -1.0)
    for c in range(n_classes):
        all_scores, all_tp, n_gt = [], [], 0
        for g_boxes, g_lab, d_boxes, d_scores, d_lab in zip(gt.boxes, gt.labels, dets.boxes, dets.scores, dets.labels):
            g = xywh_to_xyxy(np.asarray(g_boxes)[np.asarray(g_lab) == c])
            n_gt += len(g)
            sel = np.asarray(d_lab) == c
            d, s = xywh_to_xyxy(np.asarray(d_boxes)[sel]), np.asarray(d_scores, dtype=np.float64)[sel]
            order = np.argsort(-s, kind="mergesort")[:max_dets]
            d, s = d[order], s[order]
            tp = np.zeros(len(d), dtype=bool)
            if len(g) and len(d):
                ious, taken = iou(d, g), np.zeros(len(g), dtype=bool)
                for i in range(len(d)):
                    best, m = min(iou_threshold, 1 - 1e-10), -1
                    for j in range(len(g)):
                        if taken[j] or ious[i, j] < best:
                            continue
                        best, m = ious[i, j], j            # ties go to the later gt, as in COCOeval
                    if m >= 0:
                        taken[m], tp[i] = True, True
            all_scores.append(s)
            all_tp.append(tp)
        if n_gt == 0:
            continue
        scores = np.concatenate(all_scores)
        tps = np.concatenate(all_tp)[np.argsort(-scores, kind="mergesort")]
        tp_sum, fp_sum = np.cumsum(tps, dtype=np.float64), np.cumsum(~tps, dtype=np.float64)
        recall = tp_sum / n_gt
        precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        idx = np.searchsorted(recall, rec_thrs, side="left")
        q = np.zeros(len(rec_thrs))
        reached = idx < len(envelope)                       # recall points never reached keep precision 0
        q[reached] = envelope[idx[reached]]
        prec_table[:, c] = q
        per_class[c] = q.mean()
    valid = ~np.isnan(per_class)
    return {"mAP": float(per_class[valid].mean()) if valid.any() else float("nan"),
            "per_class": per_class, "precision": prec_table}


def coco_dicts(gt: DetectionSet | Any, dets: Detections | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground truth as a COCO ``dataset`` dict and the detections as a ``loadRes`` list.

    Image ids and annotation ids start at **1**: COCOeval stores the matched
    ground-truth *id* per detection and treats id 0 as "unmatched".
    Category ids are class index + 1.
    """
    images, anns = [], []
    for i, (b, lab) in enumerate(zip(gt.boxes, gt.labels)):
        images.append({"id": i + 1, "width": 64, "height": 64})
        for box, c in zip(np.asarray(b, dtype=float), lab):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": [float(v) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0})
    dataset = {"images": images, "annotations": anns,
               "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}
    res = []
    if dets is not None:
        for i, (b, s, lab) in enumerate(zip(dets.boxes, dets.scores, dets.labels)):
            for box, sc, c in zip(np.asarray(b, dtype=float), s, lab):
                res.append({"image_id": i + 1, "category_id": int(c) + 1,
                            "bbox": [float(v) for v in box], "score": float(sc)})
    return dataset, res


def pycocotools_map50(gt: DetectionSet | Any, dets: Detections) -> dict[str, Any]:
    """mAP@0.5 (area all, maxDets 100) from ``pycocotools.COCOeval``, built in memory, silenced.

    Returns ``{"mAP": stats[1], "per_class": AP at IoU 0.5 per category}``.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, res = coco_dicts(gt, dets)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if not res:
            return {"mAP": 0.0, "per_class": np.zeros(len(CLASSES))}
        coco_dt = coco_gt.loadRes(res)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    t = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    prec = ev.eval["precision"][t, :, :, 0, -1]                # (101 recall, K classes), area all, maxDets 100
    per_class = np.array([prec[:, k][prec[:, k] > -1].mean() if (prec[:, k] > -1).any() else np.nan
                          for k in range(prec.shape[1])])
    return {"mAP": float(ev.stats[1]), "per_class": per_class}


# ----------------------------------------------------------------------------- the detector
class TinyCenterNet(nn.Module):
    """A CenterNet-style detector: a few strided convs, then 1x1 heads on a stride-4 grid.

    Output (B, n_classes + 4, H/4, W/4): class heatmap logits, then the
    sub-cell centre offset (2, in cells) and the log box size (2, log of pixels / 4).
    """

    def __init__(self, width: int = 32, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        w = width
        self.n_classes = n_classes
        self.body = nn.Sequential(
            nn.Conv2d(1, w // 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=2, dilation=2), nn.ReLU(),
        )
        self.head = nn.Conv2d(w, n_classes + 4, 1)
        with torch.no_grad():                               # CenterNet's prior: heatmaps start near 0.1
            self.head.bias[:n_classes].fill_(-2.19)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


STRIDE = 4


def centernet_targets(data: DetectionSet, n_classes: int = len(CLASSES)) -> tuple[torch.Tensor, ...]:
    """Gaussian heatmaps (B, C, h, w), and per-object (batch, class, cy, cx, offset(2), log size(2))."""
    n, _, H, W = data.images.shape
    h, w = H // STRIDE, W // STRIDE
    heat = np.zeros((n, n_classes, h, w), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    rows = []
    for b, (boxes, labels) in enumerate(zip(data.boxes, data.labels)):
        for (x, y, bw, bh), c in zip(boxes, labels):
            cx, cy = (x + bw / 2) / STRIDE, (y + bh / 2) / STRIDE
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            sigma = max(bw / STRIDE / 6, 0.5)
            g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2))
            heat[b, c] = np.maximum(heat[b, c], g)
            rows.append((b, c, iy, ix, cx - ix, cy - iy, np.log(bw / STRIDE), np.log(bh / STRIDE)))
    r = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return (torch.from_numpy(heat), torch.from_numpy(r[:, :4].astype(np.int64)),
            torch.from_numpy(r[:, 4:].astype(np.float32)))


def centernet_loss(out: torch.Tensor, heat: torch.Tensor, idx: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss on the heatmap (alpha 2, beta 4) + L1 on offset and log size at centres."""
    C = heat.shape[1]
    p = torch.sigmoid(out[:, :C]).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - heat) ** 4 * (1 - pos)).sum()
    n_pos = pos.sum().clamp(min=1.0)
    b, _, cy, cx = idx.unbind(1)
    pred = out[b, C:, cy, cx]                                # (n_obj, 4)
    return (pos_loss + neg_loss) / n_pos + F.l1_loss(pred, reg, reduction="sum") / n_pos


def train_detector(model: nn.Module, data: DetectionSet, *, seconds: float, batch_size: int = 32, lr: float = 3e-3,
                   seed: int = 0, soft_targets: torch.Tensor | None = None, max_steps: int | None = None) -> dict[str, Any]:
    """Adam on the CenterNet loss for a wall-clock budget (or ``max_steps``); returns the loss curve.

    With ``soft_targets`` (n, C, H/4, W/4), a teacher's sigmoid heatmaps for the same
    images, the heatmap target becomes ``max(ground truth, teacher)`` (peaks stay
    at 1): knowledge distillation; the box terms stay on ground truth.
    """
    import time

    if getattr(data, "_targets", None) is None:                 # cached: several models train on one set
        data._targets = centernet_targets(data)
    heat_all, idx_all, reg_all = data._targets
    x_all = torch.from_numpy(data.images)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, t0, step = [], time.perf_counter(), 0
    model.train()
    while time.perf_counter() - t0 < seconds and (max_steps is None or step < max_steps):
        batch = torch.randperm(len(data), generator=g)[:batch_size]
        pos = torch.full((len(data),), -1, dtype=torch.long)
        pos[batch] = torch.arange(len(batch))
        keep = pos[idx_all[:, 0]] >= 0
        idx = idx_all[keep].clone()
        idx[:, 0] = pos[idx[:, 0]]
        heat = heat_all[batch]
        x = x_all[batch]
        if soft_targets is not None:
            heat = torch.where(heat.eq(1), heat, torch.maximum(heat, soft_targets[batch]).clamp(max=0.99))
        loss = centernet_loss(model(x), heat, idx, reg_all[keep])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
    model.eval()
    return {"losses": losses, "steps": step, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def decode(out: torch.Tensor, *, k: int = 100, score_threshold: float = 0.05, iou_threshold: float | None = 0.5,
           n_classes: int = len(CLASSES)) -> Detections:
    """Heatmap peaks (3x3 max-pool) -> top-k -> boxes (xywh pixels) -> per-class NMS.

    ``iou_threshold=None`` skips NMS (the max-pool already suppresses neighbours).
    """
    heat = torch.sigmoid(out[:, :n_classes])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    B, C, h, w = heat.shape
    scores, flat = peaks.reshape(B, -1).topk(min(k, C * h * w), dim=1)
    cls, cell = flat // (h * w), flat % (h * w)
    cy, cx = cell // w, cell % w
    boxes, sc, lab = [], [], []
    for b in range(B):
        s = scores[b].numpy().astype(np.float64)
        m = s >= score_threshold
        reg = out[b, C:, cy[b], cx[b]].numpy().astype(np.float64)      # (4, k)
        ctr_x = (cx[b].numpy() + reg[0]) * STRIDE
        ctr_y = (cy[b].numpy() + reg[1]) * STRIDE
        bw, bh = np.exp(np.clip(reg[2], -3, 5)) * STRIDE, np.exp(np.clip(reg[3], -3, 5)) * STRIDE
        xywh = np.stack([ctr_x - bw / 2, ctr_y - bh / 2, bw, bh], axis=1)[m]
        s, c = s[m], cls[b].numpy()[m]
        if iou_threshold is not None and len(s):
            keep = batched_nms(xywh_to_xyxy(xywh), s, c, iou_threshold)
            xywh, s, c = xywh[keep], s[keep], c[keep]
        boxes.append(xywh)
        sc.append(s)
        lab.append(c.astype(np.int64))
    return Detections(boxes, sc, lab)


@torch.no_grad()
def heatmaps(model: nn.Module, images: np.ndarray, *, batch_size: int = 256) -> torch.Tensor:
    """Sigmoid class heatmaps (n, C, H/4, W/4) of ``model`` (a teacher's soft targets)."""
    model.eval()
    C = len(CLASSES)
    return torch.cat([torch.sigmoid(model(torch.from_numpy(images[i:i + batch_size]))[:, :C])
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def detect(model: nn.Module, images: np.ndarray, *, batch_size: int = 256, **kw: Any) -> Detections:
    """Run ``model`` over images (n, 1, H, W) and decode; ``kw`` goes to :func:`decode`."""
    model.eval()
    parts = [decode(model(torch.from_numpy(images[i:i + batch_size])), **kw) for i in range(0, len(images), batch_size)]
    return Detections(*[sum((getattr(p, f) for p in parts), []) for f in ("boxes", "scores", "labels")])


# ----------------------------------------------------------------------------- efficiency
def count_flops(model: nn.Module, images: np.ndarray) -> int:
    """FLOPs of one forward pass over ``images`` (n, 1, H, W), from ``torch.utils.flop_counter``.

    A multiply-add counts as 2 FLOPs; zeros inside dense weights still count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.from_numpy(images))
    return int(counter.get_total_flops())


def n_params(model: nn.Module, *, nonzero: bool = False) -> int:
    """Number of parameters (or of non-zero ones)."""
    return int(sum(int((p != 0).sum()) if nonzero else p.numel() for p in model.parameters()))


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy with the globally smallest-|w| fraction ``sparsity`` of conv weights set to 0.

    Unstructured: the tensors keep their shapes, so dense kernels run exactly as
    fast as before; the gain needs sparse kernels or sparse hardware.
    """
    import copy

    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    pruned = copy.deepcopy(model)
    convs = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    mags = torch.cat([m.weight.detach().abs().flatten() for m in convs])
    k = int(sparsity * mags.numel())
    if k == 0:
        return pruned
    cut = mags.kthvalue(k).values
    with torch.no_grad():
        for m in convs:
            mask = (m.weight.abs() > cut).float()
            m.weight.mul_(mask)
            m.weight.register_hook(lambda g, mask=mask: g * mask)   # fine-tuning keeps pruned weights at 0
    return pruned


def prune_channels(model: TinyCenterNet, keep: float) -> TinyCenterNet:
    """Structured pruning: keep the ``keep`` fraction of each hidden conv's output channels.

    Channels are ranked by the L1 norm of their filters; the next layer loses the
    matching input channels.  The result is a genuinely smaller dense network.
    """
    import copy

    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    new = copy.deepcopy(model)
    layers = [i for i, m in enumerate(new.body) if isinstance(m, nn.Conv2d)]
    convs = [new.body[i] for i in layers] + [new.head]
    in_keep = torch.arange(1)
    for j, conv in enumerate(convs):
        w, b = conv.weight.detach()[:, in_keep], conv.bias.detach()
        if j < len(convs) - 1:
            n_out = max(1, round(keep * w.shape[0]))
            out_keep = w.abs().sum(dim=(1, 2, 3)).argsort(descending=True)[:n_out].sort().values
        else:
            out_keep = torch.arange(w.shape[0])
        repl = nn.Conv2d(len(in_keep), len(out_keep), conv.kernel_size, conv.stride, conv.padding, conv.dilation)
        with torch.no_grad():
            repl.weight.copy_(w[out_keep])
            repl.bias.copy_(b[out_keep])
        if j < len(convs) - 1:
            new.body[layers[j]] = repl
        else:
            new.head = repl
        in_keep = out_keep
    return new


def quantize_weights_int8(model: nn.Module) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy whose conv weights went through symmetric per-output-channel int8 and back.

    ``scale = max|w| / 127`` per output channel, zero point 0,
    ``code = clamp(round_half_even(w / scale), -127, 127)`` (the codes
    ``torch.quantize_per_channel`` gives for the same scales).  The copy holds the
    dequantized floats ``code * scale``, so it shows the *accuracy* of int8
    weights, not their speed (that needs int8 kernels).

    Returns
    -------
    (model copy, {parameter name: int8 codes}).
    """
    import copy

    q, codes = copy.deepcopy(model), {}
    with torch.no_grad():
        for name, m in q.named_modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                scale = (w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127).clamp(min=1e-12)
                c = torch.round(w / scale).clamp(-127, 127)
                codes[f"{name}.weight"] = c.to(torch.int8)
                m.weight.copy_(c * scale)
    return q, codes


# ----------------------------------------------------------------------------- active learning
@torch.no_grad()
def flip_disagreement(model: nn.Module, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Active-learning score: how much the model contradicts itself on the mirror image.

    Every class here is left-right symmetric, so the true heatmap of a mirrored
    image is the mirrored true heatmap.  A model that is sure of an image
    predicts the same thing both ways; where it is unsure (a new condition:
    small objects, night noise) the two disagree.  The score is the L1 distance
    ``sum |H(x) - flip(H(flip(x)))|`` over classes and cells: consistency-based
    active learning, which needs no labels and no second model.

    Returns float64 (n,), larger = more worth labelling.
    """
    h = heatmaps(model, images, batch_size=batch_size)
    h_flip = heatmaps(model, np.ascontiguousarray(images[..., ::-1]), batch_size=batch_size).flip(-1)
    return (h - h_flip).abs().sum(dim=(1, 2, 3)).double().numpy()


@torch.no_grad()
def least_confidence(model: nn.Module, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Active-learning score ``1 - (highest heatmap peak)``: the image whose best detection is weakest."""
    h = heatmaps(model, images, batch_size=batch_size)
    return 1.0 - h.flatten(1).amax(dim=1).double().numpy()


@torch.no_grad()
def image_losses(model: nn.Module, data: DetectionSet) -> np.ndarray:
    """CenterNet loss of each image under ``model`` (needs the labels: the oracle an
    acquisition score tries to predict without them).  float64 (n,)."""
    model.eval()
    heat, idx, reg = centernet_targets(data)
    out = torch.cat([model(torch.from_numpy(data.images[i:i + 256])) for i in range(0, len(data), 256)])
    losses = np.empty(len(data))
    for i in range(len(data)):
        m = idx[:, 0] == i
        own = idx[m].clone()
        own[:, 0] = 0
        losses[i] = float(centernet_loss(out[i:i + 1], heat[i:i + 1], own, reg[m]))
    return losses


def select_for_labelling(scores: Any, budget: int) -> np.ndarray:
    """The ``budget`` highest-scoring images (ties: lower index first), as int64 indices."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be a 1-D array of finite numbers, got shape {s.shape}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 1 <= budget <= len(s):
        raise ValueError(f"budget must be an integer in [1, {len(s)}] (the pool size), got {budget!r}")
    return np.argsort(-s, kind="stable")[:budget].astype(np.int64)
