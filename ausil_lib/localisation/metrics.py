"""Segment-level localisation scores, as the VCDB protocol counts copies, plus how exact they are.

A detection is correct when its query interval and its video interval both overlap those of a true
segment pair of the same query and video (VCDB). Precision: correct detections / detections; recall:
true pairs hit by at least one detection / true pairs. Temporal IoU of a detection with a true pair is
the mean of the query-side and the video-side interval IoU; mean IoU is taken over true pairs (the best
detection's, 0 for a missed pair). Speed error: |detected / true speed - 1| of each hit pair's best
detection, averaged. The metrics file's keys are short so that `dvc metrics show`, one table over
every metrics file, stays within 200 columns: P, R, F1, tIoU (mean IoU), dspd (speed error), n (true pairs).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .segments import Segment


def interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return min(a[1], b[1]) > max(a[0], b[0])


def hits(det: Segment, true: Segment) -> bool:
    return overlaps(det.query_span, true.query_span) and overlaps(det.video_span, true.video_span)


def segment_iou(det: Segment, true: Segment) -> float:
    return 0.5 * (interval_iou(det.query_span, true.query_span) + interval_iou(det.video_span, true.video_span))


def localisation_metrics(
    detected: Mapping[str, Mapping[str, Sequence[Segment]]], truth: Mapping[str, Mapping[str, Sequence[Segment]]]
) -> dict[str, Any]:
    """P, R, F1, mean IoU, mean speed error and the counts they come from (module docstring)."""
    n_det = correct = n_true = hit = 0
    ious: list[float] = []
    speed_errors: list[float] = []
    for q, videos in detected.items():
        for v, dets in videos.items():
            trues = truth.get(q, {}).get(v, ())
            n_det += len(dets)
            correct += sum(any(hits(d, t) for t in trues) for d in dets)
    for q, videos in truth.items():
        for v, trues in videos.items():
            dets = detected.get(q, {}).get(v, ())
            for t in trues:
                n_true += 1
                matching = [d for d in dets if hits(d, t)]
                if not matching:
                    ious.append(0.0)
                    continue
                hit += 1
                best = max(matching, key=lambda d: segment_iou(d, t))
                ious.append(segment_iou(best, t))
                speed_errors.append(abs(best.speed / t.speed - 1.0))
    precision = correct / n_det if n_det else 0.0
    recall = hit / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "P": precision,
        "R": recall,
        "F1": f1,
        "tIoU": sum(ious) / len(ious) if ious else 0.0,
        "dspd": sum(speed_errors) / len(speed_errors) if speed_errors else None,
        "n": n_true,
    }
