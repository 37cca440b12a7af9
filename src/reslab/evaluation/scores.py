"""Top-1/top-5 error as the paper measures it: one function for training, the CLI and tests.

Views (section 3.4 "Testing"): a centre crop; 10-crop (4 corners + centre and their
flips, scores averaged); and fully-convolutional testing where whole images are
resized to several scales ({224, 256, 384, 480, 640}) and the class scores of all
scales are averaged. `flip=True` adds the mirror image of every view; `shift=s` adds
copies translated by s px (beyond the paper: airbench's test-time augmentation).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import NonFiniteScores
from ..glibc_heap import untuned_heap


def _softmax(model: nn.Module, x: Tensor, flip: bool) -> Tensor:
    p = F.softmax(model(x).float(), dim=1)
    if flip:
        p = (p + F.softmax(model(x.flip(-1)).float(), dim=1)) / 2
    return p


@torch.no_grad()
def class_scores(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    flip: bool = False,
    shift: int = 0,
) -> tuple[Tensor, Tensor]:
    """Softmax scores (N, K) and labels (N,) over a loader's batches, in loader order.

    A batch of shape (B, V, C, H, W) holds V views per image (e.g. 10-crop); their
    softmax scores are averaged, as are those of the flipped copies with flip=True.
    shift=s > 0 also scores every view translated by s px down-right and up-left
    (zero padding: the mean colour of normalised inputs, as in training's random crops),
    with their mirrors under flip=True. As in airbench (Jordan, 2024) the untranslated
    scores weigh 1/2 and each translation 1/4.
    """
    if shift < 0:
        raise ValueError(f"shift must be >= 0 px, not {shift}")
    was_training = model.training
    model.eval()
    scores, labels = [], []
    for x, y in batches:
        views = x.shape[1] if x.dim() == 5 else 1
        x = x.flatten(0, 1) if x.dim() == 5 else x  # (B*V, C, H, W)
        p = _softmax(model, x, flip)
        if shift:
            h, w = x.shape[-2:]
            if shift >= min(h, w):
                raise ValueError(f"shift {shift} px needs images larger than {h}x{w}")
            xp = F.pad(x, (shift,) * 4)
            down = _softmax(model, xp[..., :h, :w], flip)
            up = _softmax(model, xp[..., 2 * shift :, 2 * shift :], flip)
            p = p / 2 + (down + up) / 4
        scores.append(p.view(-1, views, p.shape[1]).mean(1).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    if not scores:
        raise ValueError("evaluation got no batches (empty split?)")
    return torch.cat(scores), torch.cat(labels)


def topk_errors(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"top1_error": %, "top5_error": %, "loss": mean NLL, "n": count}; k capped at K.
    Scores holding NaN or infinity (a diverged net) raise NonFiniteScores: their argmax
    would be scored as if it were a prediction."""
    n, k_max = scores.shape
    bad = int((~scores.isfinite()).any(1).sum())
    if bad:
        raise NonFiniteScores(
            f"the network's outputs are NaN or infinite for {bad} of {n} "
            "images (a diverged network?); no error rate is read from them"
        )
    ranked = scores.topk(min(max(ks), k_max), dim=1).indices  # (N, k)
    hits = ranked == labels[:, None]
    out: dict[str, float] = {}
    for k in ks:
        out[f"top{k}_error"] = 100.0 * (1 - hits[:, : min(k, k_max)].any(1).float().mean().item())
    out["loss"] = F.nll_loss(scores.clamp_min(1e-12).log(), labels).item()
    out["n"] = n
    return out


def evaluate(
    model: nn.Module,
    *loaders: Iterable[tuple[Tensor, Tensor]],
    flip: bool = False,
    shift: int = 0,
    ks: Sequence[int] = (1, 5),
    predictions: bool = False,
) -> dict[str, float]:
    """Errors of `model` on a loader's batches, e.g. `evaluate(model, data.val.epoch(0))`.

    With several loaders (one per test scale), which must list the same images in the
    same order, the class scores are averaged over them before ranking. `predictions`
    adds each image's top-1 class and label, in loader order ("predictions", "labels"):
    what a paired comparison of two nets on the same images needs.
    """
    if not loaders:
        raise ValueError("evaluate needs at least one loader")
    # Large buffers mapped on their own for the evaluation (glibc_heap.untuned_heap): the
    # CLI's tuned heap would keep a batch of 100's activations for the process's life.
    with untuned_heap():
        runs = [class_scores(model, batches, flip, shift) for batches in loaders]
    for _, labels in runs[1:]:
        if not torch.equal(labels, runs[0][1]):
            raise ValueError("multi-scale evaluation: the loaders list different images")
    scores = torch.stack([s for s, _ in runs]).mean(0)
    out: dict = topk_errors(scores, runs[0][1], ks)
    if predictions:
        out["predictions"] = scores.argmax(1).tolist()
        out["labels"] = runs[0][1].tolist()
    return out
