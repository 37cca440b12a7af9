"""Augmentation and evaluation views.

Two families: batched tensor ops for data held in memory (CIFAR, paper sec. 4.2),
which touch a whole batch at once with no per-sample Python, and per-image Pillow
ops for JPEG folders (paper sec. 3.4), which run inside DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .sources import open_rgb

# AlexNet PCA colour augmentation (Krizhevsky et al. 2012), for RGB in [0, 1]; the
# widely used values from fb.resnet.torch, which the ResNet authors' recipe follows.
PCA_STD = 0.1
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor(
    [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
)
# ImageNet per-channel statistics (RGB, [0, 1]); see Normalizer for why ImageFolder uses them.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


# ---------------------------------------------------------------------------- normalisation


class Normalizer:
    """uint8 -> normalised float32 in one fused op: (x/255 - mean) / std.

    kind "pixel-mean": the paper's CIFAR preprocessing subtracts the mean *image*
    of the training split (mean has shape (3, H, W)); we also divide by one global
    std so inputs have roughly unit scale, which the paper does not say it does.
    kind "channel": per-channel mean and std (shape (3, 1, 1)). ImageFolder always
    uses per-channel ImageNet statistics because its images differ in size, so a
    mean image is undefined; the paper's per-pixel mean of 224 crops is close to a
    constant per channel anyway.
    """

    def __init__(self, kind: str, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.kind = kind
        self.mean = mean.float()  # (3, H, W) or (3, 1, 1), [0, 1] units
        self.std = std.float().reshape(-1, 1, 1)  # (1|3, 1, 1)
        self._scale = 1.0 / (255.0 * self.std)  # fold /255 and /std into one multiply
        self._shift = self.mean / self.std

    @classmethod
    def fit(cls, kind: str, x: torch.Tensor, chunk: int = 1024) -> Normalizer:
        """Statistics of a uint8 training tensor (N, 3, H, W).

        Per-pixel sums of x and x^2 are exact in int64 and taken `chunk` images at a
        time: a float64 copy of CIFAR's 45k training images would be 1.1 GB, and its
        (x - mean)^2 another two (3.4 GB of peak memory for a 138 MB dataset).
        """
        if kind not in ("pixel-mean", "channel"):
            raise ValueError(f"unknown normalize={kind!r}; use 'pixel-mean' or 'channel'")
        n = len(x)
        s1 = torch.zeros(x.shape[1:], dtype=torch.int64)  # (3, H, W)
        s2 = torch.zeros(x.shape[1:], dtype=torch.int64)
        for i in range(0, n, chunk):
            c = x[i : i + chunk].cpu().to(torch.int64)  # (chunk, 3, H, W): 25 MB at 32 px
            s1 += c.sum(0)
            s2 += c.square_().sum(0)
        s1, s2 = s1.double() / 255.0, s2.double() / 255.0**2  # [0, 1] units from here
        if kind == "pixel-mean":
            mean = s1 / n  # (3, H, W)
            std = (s2 / n - mean.square()).mean().clamp_min(0).sqrt().reshape(1)
        else:
            m = n * x.shape[2] * x.shape[3]  # values per channel
            c1, c2 = s1.sum((1, 2)), s2.sum((1, 2))  # (3,)
            mean = (c1 / m).reshape(3, 1, 1)
            std = ((c2 - c1.square() / m) / (m - 1)).clamp_min(0).sqrt()  # unbiased, as torch.std
        return cls(kind, mean, std)

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        """The inverse of to_dict: the statistics a model was trained with."""
        try:
            kind, mean, std = d["kind"], torch.tensor(d["mean"]), torch.tensor(d["std"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"a normalization record needs kind, mean and std ({e})") from None
        if kind not in ("pixel-mean", "channel") or mean.dim() not in (1, 3) or len(mean) != 3:
            raise ValueError(
                f"unusable normalization record: kind {kind!r}, mean {tuple(mean.shape)}"
            )
        stds = 1 if kind == "pixel-mean" else 3  # one std over all pixels, or one a channel
        if std.dim() != 1 or len(std) != stds:
            raise ValueError(
                f"normalization std needs {stds} value(s) for {kind!r}, got "
                f"{std.flatten().tolist()}"
            )
        if not (mean.isfinite().all() and std.isfinite().all() and (std > 0).all()):
            raise ValueError(
                "normalization mean and std must be finite numbers and std > 0, "
                f"got std {std.tolist()} and a mean with "
                f"{int((~mean.isfinite()).sum())} non-finite values"
            )
        return cls(kind, mean if mean.dim() == 3 else mean.reshape(3, 1, 1), std)

    def to(self, device: torch.device) -> Normalizer:
        return Normalizer(self.kind, self.mean.to(device), self.std.to(device))

    def __call__(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """x uint8 (B, 3, H, W); shift (B, 3) is added in [0, 1] units first (PCA lighting)."""
        out = x.float().mul_(self._scale).sub_(self._shift)  # in place: one pass fewer
        if shift is not None:
            out = out + (shift / self.std.reshape(1, -1))[:, :, None, None]
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable recipe to preprocess a new RGB image the same way at inference."""
        return {
            "kind": self.kind,
            "input": "RGB, uint8 / 255 (values in [0, 1]), (3, H, W)",
            "mean": self.mean.squeeze(-1).squeeze(-1).cpu().tolist(),
            "std": self.std.flatten().cpu().tolist(),
            "formula": "(x - mean) / std",
        }


def pca_shift(alpha: torch.Tensor) -> torch.Tensor:
    """alpha (B, 3) ~ N(0, 0.1) -> RGB offsets (B, 3): eigvec @ (alpha * eigval)."""
    return (alpha * PCA_EIGVAL.to(alpha)) @ PCA_EIGVEC.to(alpha).T


# ---------------------------------------------------------------------------- batched (memory)


def crop_flip(
    x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Zero-pad by `pad`, crop back to (H, W) at per-sample offsets, flip where asked.

    x (B, C, H, W) normalised, so the zero padding is the mean colour, as in
    fb.resnet.torch. oy, ox in [0, 2*pad] and flip bool, all (B,) on x's device.
    One gather for the whole batch: no per-sample Python.
    """
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    # Two torch.gather calls (rows, then columns) beat one 4-index advanced-indexing
    # gather by ~2.5x on CPU; the flip is folded into the column indices for free.
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    xp = xp.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))  # (B, C, H, W+2p)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return xp.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def ten_crop_batch(x: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, 10, C, H, W): corners and centre of the padded image, and flips.

    For 32x32 CIFAR the crops are translations by `pad` pixels, the only way a
    same-size crop can differ from the whole image.
    """
    b = x.shape[0]
    offsets = [(0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad), (pad, pad)]
    views = []
    for flip in (False, True):
        for oy, ox in offsets:
            full = torch.full((b,), oy, device=x.device), torch.full((b,), ox, device=x.device)
            views.append(crop_flip(x, *full, torch.full((b,), flip, device=x.device), pad))
    return torch.stack(views, 1)


def crop_resize(
    x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """Crop a box out of every image, resize it to size x size (bilinear), mirror where asked.

    x (B, C, L, L) float; boxes (B, 4) = top, left, height, width in pixels (fractional
    allowed); flip (B,) bool. One affine grid and one grid_sample for the whole batch.
    Not antialiased: the stored squares (folder_cache.stored_side) are 1.25x the crop,
    so no box shrinks by more than that. (Separable resampling by two batched matmuls,
    antialiased, measured 3-4x slower on this CPU: 37 vs 11 ms for 32 images, 1 thread.)
    """
    b, c, side = x.shape[0], x.shape[1], x.shape[-1]
    top, left, h, w = boxes.to(x).unbind(1)  # (B,) each
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    # align_corners=False: [-1, 1] spans the pixels' outer edges, [0, side] in pixels
    theta[:, 0, 0] = torch.where(flip, -w, w) / side
    theta[:, 0, 2] = (2 * left + w) / side - 1
    theta[:, 1, 1] = h / side
    theta[:, 1, 2] = (2 * top + h) / side - 1
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)  # (B, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ---------------------------------------------------------------------------- per-image (Pillow)


def scaled(size: int, image_size: int) -> int:
    """A paper size (for 224 inputs) scaled to image_size: 256 -> 146 at image_size 128."""
    return round(size * image_size / 224)


def _resize_short(img: Image.Image, short: int) -> Image.Image:
    w, h = img.size
    if min(w, h) == short:
        return img
    s = short / min(w, h)
    return img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BILINEAR)


def _to_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8)  # (H, W, 3)


def _crop(img: Image.Image, top: int, left: int, size: int) -> Image.Image:
    return img.crop((left, top, left + size, top + size))


def train_paper(path: str, rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Sec. 3.4: shorter side to a random S in [256, 480] (scaled), random crop, flip."""
    short = int(rng.integers(scaled(256, image_size), scaled(480, image_size) + 1))
    img = _resize_short(open_rgb(path, draft_short=lambda w, h: short), short)
    w, h = img.size
    top = int(rng.integers(0, h - image_size + 1))
    left = int(rng.integers(0, w - image_size + 1))
    img = _crop(img, top, left, image_size)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return _to_array(img)


def _rrc_box(w: int, h: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop box (scale 0.08-1, log-uniform ratio 3/4-4/3), as in Szegedy et al."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    side = min(w, h)  # fallback: the centre square
    return (h - side) // 2, (w - side) // 2, side, side


def train_rrc(path: str, rng: np.random.Generator, image_size: int) -> np.ndarray:
    box: list[float] = []

    def plan(w: int, h: int) -> int:
        top, left, ch, cw = _rrc_box(w, h, rng)
        box[:] = [top / h, left / w, ch / h, cw / w]  # relative, so it survives draft scaling
        return math.ceil(min(w, h) * image_size / min(cw, ch))

    img = open_rgb(path, draft_short=plan)
    w, h = img.size
    top, left, ch, cw = box[0] * h, box[1] * w, box[2] * h, box[3] * w
    img = img.resize((image_size, image_size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return _to_array(img)


def center_view(path: str, image_size: int, short: int | None = None) -> np.ndarray:
    """Shorter side to 256 (scaled; or `short`), centre crop image_size."""
    short = short or scaled(256, image_size)
    img = _resize_short(open_rgb(path, draft_short=lambda w, h: short), short)
    w, h = img.size
    return _to_array(_crop(img, (h - image_size) // 2, (w - image_size) // 2, image_size))


def ten_crop_view(path: str, image_size: int) -> np.ndarray:
    """(10, H, W, 3): 4 corners and centre of the centre view's resize, then their flips."""
    short, s = scaled(256, image_size), image_size
    img = _resize_short(open_rgb(path, draft_short=lambda w, h: short), short)
    w, h = img.size
    corners = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), ((h - s) // 2, (w - s) // 2)]
    crops = [_to_array(_crop(img, t, left, s)) for t, left in corners]
    return np.stack(crops + [c[:, ::-1] for c in crops])


def full_view(path: str, short: int) -> np.ndarray:
    """Whole image, shorter side resized to `short`, no crop (fully-convolutional testing)."""
    return _to_array(_resize_short(open_rgb(path, draft_short=lambda w, h: short), short))


TRAIN_VIEWS: dict[str, Callable[[str, np.random.Generator, int], np.ndarray]] = {
    "paper": train_paper,
    "rrc": train_rrc,
}
