"""The judge: an independent referee that says what a Shapes image shows, and whether it looks real at all.

Every generator of the course (VQGAN+CLIP, DALL-E, unCLIP) is asked for things like "a red circle at the top".
To say how often it delivers we need a *referee*: something that looks at the picture and says "this is a
red circle at the top" without asking CLIP. Using CLIP itself as the referee would be circular - the
generator was optimised (or re-ranked) to please CLIP, so CLIP's score measures how well the generator
fooled CLIP, not what the picture shows. That is why this module imports no CLIP, VQGAN or generator code.

The judge has two independent parts:

1. **A small supervised CNN** (:class:`JudgeNet`) that classifies shape, colour, size and position. It is
   trained (``python -m mmcore.train_judge``, see :mod:`mmcore.train_judge`) on fresh renders of *every*
   (shape, colour) composition - the ``"heldout"`` ones included: the judge is a referee, not a student of
   compositional generalisation - with augmentations (blur, noise, colour jitter, JPEG, resizing) that keep
   the labels valid, so that generator artefacts do not confuse it. It reaches over 99 % on each attribute.

2. **A cleanliness check** (:func:`clean_measures`, :func:`clean_reasons`) that does not learn anything. A
   classifier alone is easy to fool: CLIP-guided optimisation readily produces a colourful blob that any
   classifier scores as "red circle", because a classifier only ever has to choose *between* the classes it
   knows. The check asks, with plain image processing, whether the image looks like a real Shapes rendering:

   - ``background``: the border pixels look like a Shapes background (light, smooth); a plane fitted to them
     is the background estimate (:func:`estimate_background`);
   - ``objects``: exactly one connected foreground object (specks of a few pixels tolerated,
     :func:`foreground_mask`, :func:`connected_components`);
   - ``area``: of a plausible size;
   - ``color``: the object's inner pixels are uniform and close to the RGB value of the predicted colour
     (:data:`mmcore.data.COLOR_RGB`);
   - ``shape``: its soft coverage mask, centred, matches one of many real renderings of the predicted shape
     (rendered by :func:`mmcore.data.render`, segmented the same way): intersection over union
     (:func:`mask_iou`) of at least ``min_iou``. A blob, a half-drawn star or a smeared square fails here;
   - ``confident``: the CNN is sure of shape, colour and position.

   An image is ``clean`` when it passes every check; ``reasons`` lists the failed ones in words.

Fidelity (:meth:`Judge.fidelity`) is the fraction of images that are clean *and* show the requested shape
and colour (and position, if one was asked for). Where CLIP's score and the judge disagree is a lesson in
itself: a high CLIP score on an image the judge calls "not clean" is an adversarial example for CLIP.

Images: the judge works at 32 x 32 pixels, the size the course's generators work at. Other sizes are
resized (bilinear, antialiased) to 32 x 32 first; every check runs at 32 px. Input is a list of PIL images
or a float tensor (B, 3, H, W) in [0, 1].

Shapes in comments: ``B`` images, ``S`` = 32 the judge's image side, ``R`` reference masks.
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .data import COLOR_RGB, COLORS, POSITIONS, SHAPES, SIZES, render
from .images import to_tensor
from .lang import word
from . import get_device
from .weights import CHECKPOINT_DIR, check_kind, check_tensors, load_checkpoint, resolve_checkpoint, save_checkpoint

__all__ = [
    "JudgeConfig",
    "CleanThresholds",
    "JudgeNet",
    "Judge",
    "ATTRIBUTES",
    "CHECKPOINT",
    "available_models",
    "to_batch",
    "estimate_background",
    "foreground_strength",
    "coverage",
    "foreground_mask",
    "connected_components",
    "centre_masks",
    "mask_iou",
    "reference_masks",
    "clean_measures",
    "clean_reasons",
    "matches",
    "verdict",
    "load",
]

#: The attributes the CNN predicts, each with its classes in table order (the heads' output order).
ATTRIBUTES: dict[str, list[str]] = {
    "shape": list(SHAPES),
    "color": list(COLORS),
    "size": list(SIZES),
    "position": list(POSITIONS),
}

#: The shipped judge (``load()`` with no argument).
CHECKPOINT = CHECKPOINT_DIR / "shapes-judge.safetensors"
KIND = "mmcore.judge.Judge"  # the "model" of its checkpoint cards

_PALETTE = torch.tensor([COLOR_RGB[c] for c in COLORS], dtype=torch.float32) / 255  # (8, 3), table order


# ------------------------------------------------------------------------------------------------- configs

# Real renders' lowest IoU (3,000 test images) minus a margin; `python -m mmcore.train_judge` re-calibrates them.
_MIN_IOU: dict[str, float] = {"circle": 0.88, "square": 0.84, "triangle": 0.80, "star": 0.79, "heart": 0.84,
                              "cross": 0.79}


@dataclass
class JudgeConfig:
    """The CNN's architecture. ``tiny()`` is the shipped judge."""

    image_size: int = 32  # input side in pixels; other sizes are resized to this
    channels: tuple[int, ...] = (16, 32, 64)  # conv widths: a stem at full resolution, then one stage per width
    hidden: int = 128  # width of the fully connected layer before the heads

    @classmethod
    def tiny(cls) -> "JudgeConfig":
        return cls()


@dataclass
class CleanThresholds:
    """The cleanliness checks' limits (calibrated on real renders: see ``data/checkpoints/shapes-judge.md``).

    Intensities are in [0, 1] units of one RGB channel; areas are fractions of the 32 x 32 image.
    """

    border_inliers: float = 0.75  # at least this fraction of border pixels must look like smooth background
    border_tolerance: float = 0.08  # a border pixel is background if every channel is this close to the median
    foreground: float = 0.2  # colour distance from the background above which a pixel is foreground
    speck: int = 3  # components of fewer pixels are specks: tolerated (up to speck_fraction of the foreground)
    speck_fraction: float = 0.06  # specks may hold at most this fraction of the foreground pixels
    min_area: float = 0.018  # the object's area (fraction of the image) must be within [min_area, max_area]
    max_area: float = 0.27
    max_color_distance: float = 0.12  # inner pixels' mean colour vs the predicted colour's RGB (L2 over RGB)
    max_color_spread: float = 0.09  # inner pixels' colour standard deviation (RMS over RGB)
    min_iou: dict[str, float] = field(default_factory=lambda: dict(_MIN_IOU))  # per shape: soft IoU with the
    # best-matching real rendering of the predicted shape (a star's thin points match less well than a circle)
    min_confidence: float = 0.6  # the CNN's probability of its shape, colour and position answers (each)


# --------------------------------------------------------------------------------------------------- images


def to_batch(images: Sequence[Image.Image] | Tensor, image_size: int = 32) -> Tensor:
    """PIL images or a float batch (B, 3, H, W) in [0, 1] -> (B, 3, S, S) float32 in [0, 1] at ``image_size``.

    Other sizes are resized with bilinear antialiasing (PIL's bilinear resampling for PIL images, through
    :func:`mmcore.images.to_tensor`). The judge's checked entry point: clear errors for an empty list, an item
    that is not a PIL image, a wrong channel count, or values far outside [0, 1] (a normalised tensor, say).
    """
    if isinstance(images, Tensor):
        if images.ndim == 3:
            raise ValueError(f"expected a batch (B, 3, H, W); got one image of shape {tuple(images.shape)}: "
                             "add a batch dimension with images[None]")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a float tensor (B, 3, H, W) with 3 (RGB) channels; got shape {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError("no images to judge (empty batch)")
        if not images.is_floating_point():
            raise ValueError(f"expected a float tensor in [0, 1]; got dtype {images.dtype} (divide uint8 images by 255)")
        x = images.detach().to("cpu", torch.float32)
        if x.min() < -0.02 or x.max() > 1.02:
            raise ValueError(f"expected values in [0, 1]; got [{x.min().item():.3f}, {x.max().item():.3f}] "
                             "(a normalised tensor? the judge wants plain RGB in [0, 1])")
        x = x.clamp(0, 1)
        if x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        return x.clamp(0, 1).contiguous()  # (B, 3, S, S)
    if isinstance(images, Image.Image):
        images = [images]
    images = list(images)
    if not images:
        raise ValueError("no images to judge (empty list)")
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"item {i} is a {type(image).__name__}; expected PIL images or a float tensor (B, 3, H, W)")
    return to_tensor(images, image_size, resample=Image.Resampling.BILINEAR)  # (B, 3, S, S)


# -------------------------------------------------------------------------------------------------- the CNN


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class JudgeNet(nn.Module):
    """A narrow CNN: 32 -> 16 -> 8 -> 4 pixels, then one fully connected layer and a head per attribute.

    It keeps the 4 x 4 spatial map (flattened) instead of pooling it away: position is an attribute.
    ``forward`` takes images in [0, 1] (B, 3, S, S) and returns the logits of all heads concatenated,
    (B, 6 + 8 + 2 + 5); :meth:`split` cuts them per attribute.
    """

    def __init__(self, cfg: JudgeConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or JudgeConfig()
        c0, *rest = cfg.channels
        layers: list[nn.Module] = [_conv(3, c0)]
        c_in = c0
        for c in rest:  # each stage halves the resolution, then refines it
            layers += [_conv(c_in, c, stride=2), _conv(c, c)]
            c_in = c
        layers.append(_conv(c_in, c_in, stride=2))
        self.features = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(cfg.channels)
        self.sizes = [len(v) for v in ATTRIBUTES.values()]
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.hidden, sum(self.sizes)))

    def forward(self, images: Tensor) -> Tensor:
        x = (images - 0.5) / 0.25  # [0, 1] -> roughly zero mean, unit scale
        return self.head(self.features(x))  # (B, sum of classes)

    def split(self, logits: Tensor) -> dict[str, Tensor]:
        """(B, 21) logits -> {attribute: (B, classes)}."""
        return dict(zip(ATTRIBUTES, logits.split(self.sizes, dim=-1)))


# ------------------------------------------------------------------------------------ the cleanliness check


def _border(x: Tensor) -> Tensor:
    """Boolean (S, S): the outermost ring of pixels."""
    s = x.shape[-1]
    ring = torch.ones(s, s, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    return ring


def _ramps(s: int) -> tuple[Tensor, Tensor]:
    axis = torch.linspace(-0.5, 0.5, s)
    return axis[None, :].expand(s, s), axis[:, None].expand(s, s)  # x, y: each (S, S)


def estimate_background(x: Tensor, tolerance: float = 0.08) -> tuple[Tensor, Tensor]:
    """Fit the background from the border: returns ``(background (B, 3, S, S), inlier fraction (B,))``.

    Shapes backgrounds are a light tint with a linear gradient, and the object never covers the border
    (bar an antialiased pixel or two). So: take the border ring, call a pixel an *inlier* when each channel
    is within ``tolerance`` of the border's median, and fit a plane ``a + b x + c y`` per channel to the
    inliers by least squares. The inlier fraction says whether the border looked like a background at all.
    """
    b, _, s, _ = x.shape
    ring = _border(x)
    border = x[:, :, ring]  # (B, 3, P) border pixels
    median = border.median(dim=-1, keepdim=True).values  # (B, 3, 1)
    inlier = ((border - median).abs() <= tolerance).all(dim=1).float()  # (B, P)
    xs, ys = _ramps(s)
    design = torch.stack([torch.ones_like(xs[ring]), xs[ring], ys[ring]], dim=-1)  # (P, 3)
    weighted = design[None] * inlier[..., None]  # (B, P, 3)
    normal = weighted.transpose(1, 2) @ design + 1e-4 * torch.eye(3)  # (B, 3, 3)
    rhs = weighted.transpose(1, 2) @ border.transpose(1, 2)  # (B, 3 coefficients, 3 channels)
    coef = torch.linalg.solve(normal, rhs)  # (B, 3, 3)
    full = torch.stack([torch.ones_like(xs), xs, ys], dim=-1).reshape(s * s, 3)  # (S*S, 3)
    background = (full @ coef).transpose(1, 2).reshape(b, 3, s, s)  # (B, 3, S, S)
    no_fit = inlier.sum(-1) < 3  # a border with (almost) no inliers: use the median
    background = torch.where(no_fit[:, None, None, None], median[..., None].expand(b, 3, s, s), background)
    return background, inlier.mean(-1)


def foreground_strength(x: Tensor, background: Tensor) -> Tensor:
    """How far each pixel's colour is from the background: L2 over RGB, (B, S, S)."""
    return (x - background).norm(dim=1)


def coverage(x: Tensor, background: Tensor, rgb: Tensor) -> Tensor:
    """Soft mask (B, S, S) in [0, 1]: how much of each pixel is covered by an object of colour ``rgb`` (B, 3).

    A rendered pixel is ``alpha * rgb + (1 - alpha) * background`` (antialiasing blends the edge), so
    ``alpha`` is the projection of ``pixel - background`` onto ``rgb - background``.
    """
    direction = rgb[:, :, None, None] - background  # (B, 3, S, S)
    alpha = ((x - background) * direction).sum(1) / direction.pow(2).sum(1).clamp_min(1e-4)  # (B, S, S)
    return alpha.clamp(0, 1)


def foreground_mask(x: Tensor, background: Tensor, threshold: float = 0.2) -> Tensor:
    """Boolean (B, S, S): pixels whose colour is more than ``threshold`` from the background."""
    return foreground_strength(x, background) > threshold


def connected_components(mask: Tensor) -> Tensor:
    """Label the 8-connected components of a boolean batch (B, S, S): (B, S, S) long, 0 for background.

    Every foreground pixel starts with its own number; each pass, a pixel takes the largest number among
    its foreground neighbours, until nothing changes. Each component ends labelled with its largest number.
    """
    b, s, _ = mask.shape
    index = torch.arange(1, s * s + 1, dtype=torch.float32).reshape(1, 1, s, s)
    keep = mask[:, None].float()  # (B, 1, S, S)
    labels = index * keep
    for _ in range(s * s):
        spread = F.max_pool2d(labels, 3, stride=1, padding=1) * keep
        if torch.equal(spread, labels):
            break
        labels = spread
    return labels[:, 0].long()


def component_sizes(labels: Tensor) -> Tensor:
    """Pixels per label (B, S*S + 1): column ``k`` counts label ``k`` (column 0: background)."""
    b, s, _ = labels.shape
    counts = torch.zeros(b, s * s + 1, dtype=torch.long)
    return counts.scatter_add_(1, labels.reshape(b, -1), torch.ones(b, s * s, dtype=torch.long))


def centre_masks(masks: Tensor) -> Tensor:
    """Shift each soft mask (B, S, S) so that its centre of mass sits at the image centre (bilinear, subpixel).

    Comparing centred masks removes the position (and its jitter) from the shape comparison.
    """
    b, s, _ = masks.shape
    xs, ys = _ramps(s)
    total = masks.sum((1, 2)).clamp_min(1e-6)  # (B,)
    cx = (masks * xs).sum((1, 2)) / total  # (B,) in [-0.5, 0.5] image units
    cy = (masks * ys).sum((1, 2)) / total
    step = 2.0 * (s - 1) / s  # image units -> grid_sample's [-1, 1] (pixel centres at +-(S-1)/S)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = cx * step, cy * step  # sample from where the mass is
    grid = F.affine_grid(theta, (b, 1, s, s), align_corners=False)
    return F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """Soft intersection over union of masks (B, S, S) against references (R, S, S): (B, R).

    With soft masks (values in [0, 1]) intersection = sum of minima, union = sum of maxima; for binary masks
    it is the usual IoU. Blurry edges lower it, which is what we want: real renderings are sharp.
    """
    a, b = a.flatten(1), b.flatten(1)  # (B, P), (R, P)
    # min(u, v) = (u + v - |u - v|) / 2 and max(u, v) = (u + v + |u - v|) / 2, so both sums come from the
    # masses and the L1 distances, without a (B, R, P) tensor.
    total = a.sum(1)[:, None] + b.sum(1)[None]  # (B, R)
    l1 = torch.cdist(a, b, p=1)  # (B, R)
    return (total - l1) / (total + l1).clamp_min(1e-6)


def _core(mask: Tensor) -> Tensor:
    """Boolean (B, S, S): mask pixels whose 8 neighbours are all in the mask (the inside, no edge)."""
    eroded = -F.max_pool2d(-mask[:, None].float(), 3, stride=1, padding=1)  # min over each 3 x 3
    return eroded[:, 0] > 0.5


class CleanMeasures(NamedTuple):
    """The raw numbers behind the cleanliness check, one value per image (each a (B,) tensor)."""

    border_inliers: Tensor  # fraction of border pixels that look like background
    area: Tensor  # foreground pixels of the largest component, fraction of the image
    objects: Tensor  # components of at least ``speck`` pixels
    speck_fraction: Tensor  # foreground pixels outside the largest component, fraction of the foreground
    color_distance: Tensor  # inner pixels' mean RGB vs the predicted colour (L2, [0, 1] units)
    color_spread: Tensor  # inner pixels' RGB standard deviation (RMS over channels)
    iou: Tensor  # best soft IoU with a real rendering of the predicted shape
    confidence: Tensor  # min over shape, colour and position of the CNN's probability


@torch.no_grad()
def clean_measures(x: Tensor, shape_index: Tensor, color_index: Tensor, confidence: Tensor,
                   references: Tensor, reference_shape: Tensor, th: CleanThresholds) -> CleanMeasures:
    """Measure every cleanliness criterion for images ``x`` (B, 3, S, S) given the predicted shape and colour
    indices (B,), the CNN's confidence (B,), and centred reference masks (R, S, S) with their shape index (R,)."""
    b, _, s, _ = x.shape
    background, inliers = estimate_background(x, th.border_tolerance)  # (B, 3, S, S), (B,)
    mask = foreground_mask(x, background, th.foreground)  # (B, S, S)
    labels = connected_components(mask)
    sizes = component_sizes(labels)[:, 1:]  # (B, S*S): pixels per label, background dropped
    largest = sizes.argmax(1) + 1  # (B,) the label of the largest component
    main = labels == largest[:, None, None]  # (B, S, S)
    fg = mask.sum((1, 2)).float()  # (B,)
    main_area = main.sum((1, 2)).float()
    objects = (sizes >= th.speck).sum(1)
    speck_fraction = (fg - main_area) / fg.clamp_min(1)

    rgb = _PALETTE[color_index]  # (B, 3) the predicted colour
    core = _core(main)  # (B, S, S)
    few = core.sum((1, 2)) < 3  # a very thin object: use all its pixels
    core = torch.where(few[:, None, None], main, core).float()
    n_core = core.sum((1, 2)).clamp_min(1)  # (B,)
    mean = (x * core[:, None]).sum((2, 3)) / n_core[:, None]  # (B, 3)
    var = ((x - mean[:, :, None, None]).pow(2) * core[:, None]).sum((2, 3)) / n_core[:, None]  # (B, 3)
    color_distance = (mean - rgb).norm(dim=1)
    color_spread = var.mean(1).sqrt()

    alpha = coverage(x, background, rgb) * main_blob(main)  # (B, S, S) soft mask of the main object only
    centred = centre_masks(alpha)
    iou = torch.zeros(b)
    for k in shape_index.unique().tolist():  # compare only with the predicted shape's references
        rows = shape_index == k
        iou[rows] = mask_iou(centred[rows], references[reference_shape == k]).amax(1)
    return CleanMeasures(inliers, main_area / (s * s), objects, speck_fraction, color_distance, color_spread,
                         iou, confidence)


def main_blob(main: Tensor) -> Tensor:
    """The main component grown by one pixel (B, S, S) float: keeps its antialiased edge, drops the specks."""
    return F.max_pool2d(main[:, None].float(), 3, stride=1, padding=1)[:, 0]


def clean_reasons(m: CleanMeasures, th: CleanThresholds, shape_index: Tensor) -> list[list[str]]:
    """Why each image is not clean, in words (an empty list: clean); ``shape_index`` (B,): the predicted shapes."""
    min_iou = torch.tensor([th.min_iou[s] for s in SHAPES])[shape_index]  # (B,)
    failures = {
        "background": (m.border_inliers < th.border_inliers, "the border does not look like a Shapes background"),
        "empty": (m.objects == 0, "no object"),
        "objects": ((m.objects > 1) | (m.speck_fraction > th.speck_fraction), "more than one object"),
        "area": ((m.area < th.min_area) | (m.area > th.max_area), "implausible object size"),
        "color": (m.color_distance > th.max_color_distance, "the object's colour is not the predicted colour"),
        "uniform": (m.color_spread > th.max_color_spread, "the object's colour is not uniform"),
        "shape": (m.iou < min_iou, "the outline matches no real rendering of the predicted shape"),
        "confident": (m.confidence < th.min_confidence, "the classifier is unsure"),
    }
    b = m.area.shape[0]
    reasons: list[list[str]] = [[] for _ in range(b)]
    for name, (failed, text) in failures.items():
        for i in failed.nonzero().flatten().tolist():
            reasons[i].append(f"{name}: {text}")
    for i in failures["empty"][0].nonzero().flatten().tolist():  # with no object, the object checks add nothing
        reasons[i] = [r for r in reasons[i] if r.split(":")[0] in ("background", "empty")]
    return reasons


# ------------------------------------------------------------------------------------------ reference masks


def reference_masks(image_size: int = 32, per_class: int = 128, seed: int = 0,
                    tolerance: float = 0.08) -> tuple[Tensor, Tensor]:
    """Centred soft masks of real renderings: ``(masks (R, S, S), shape index (R,))``.

    For every shape and size, ``per_class`` renders at the centre with fresh jitter (size, rotation, colour,
    background), segmented exactly like the images being judged (:func:`coverage` with the true colour).
    A pure function of the arguments; about a second for the default 6 x 2 x 128 renders.
    """
    rng = random.Random(f"judge-references:{seed}")
    images, shapes, colors = [], [], []
    for k, shape in enumerate(SHAPES):
        for size in SIZES:
            for _ in range(per_class):
                color = rng.choice(list(COLORS))
                attrs = {"shape": shape, "color": color, "size": size, "position": "center"}
                images.append(render(attrs, image_size, random.Random(rng.random())))
                shapes.append(k)
                colors.append(list(COLORS).index(color))
    x = to_batch(images, image_size)  # (R, 3, S, S)
    background, _ = estimate_background(x, tolerance)
    alpha = coverage(x, background, _PALETTE[torch.tensor(colors)])  # (R, S, S)
    return centre_masks(alpha), torch.tensor(shapes)


# ------------------------------------------------------------------------------------------------ the judge


def matches(prediction: dict[str, Any], wanted: dict[str, str], require_clean: bool = True) -> bool:
    """Does one judged image show what was asked? ``wanted`` names any of shape, colour, size, position
    (e.g. ``{"shape": "circle", "color": "red"}``); keys it does not name are not checked. Unless
    ``require_clean=False``, a not-clean image never matches."""
    unknown = set(wanted) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"wanted may name {', '.join(ATTRIBUTES)}; got {', '.join(sorted(unknown))}")
    if require_clean and not prediction["clean"]:
        return False
    return all(prediction[key] == value for key, value in wanted.items())


# The name of each cleanliness check (clean_reasons) as a Bengali verdict shows it.
CHECK_NAMES_BN: dict[str, str] = {
    "background": "পটভূমি", "empty": "ফাঁকা", "objects": "একাধিক বস্তু", "area": "বস্তুর মাপ", "color": "রং",
    "uniform": "অসমান রং", "shape": "সীমারেখা", "outline": "সীমারেখা", "confident": "অনিশ্চিত",
}


def verdict(prediction: dict[str, Any], wanted: dict[str, str], lang: str = "en") -> str:
    """A short caption for one judged image in ``lang``: ``"ok"``, ``"wrong shape+colour"``, or
    ``"not clean: <check>"`` (Bengali: ``"ঠিক"``, ``"ভুল আকৃতি+রং"``, ``"অপরিচ্ছন্ন: <check>"``)."""
    if matches(prediction, wanted):
        return word("ok", lang)
    wrong = [k for k in wanted if prediction[k] != wanted[k]]
    if wrong:
        return word("wrong", lang) + " " + "+".join(word(k, lang) for k in wrong)
    check = prediction["reasons"][0].split(":")[0] if prediction["reasons"] else "?"
    return word("not clean", lang) + ": " + (CHECK_NAMES_BN.get(check, check) if lang == "bn" else check)


class Judge:
    """The referee: a trained :class:`JudgeNet` plus the cleanliness check. Build it with :func:`load`."""

    def __init__(self, net: JudgeNet, thresholds: CleanThresholds | None = None, card: dict | None = None):
        self.net = net.eval()
        self.thresholds = thresholds or CleanThresholds()
        self.card = card or {}
        self._references: tuple[Tensor, Tensor] | None = None

    @property
    def image_size(self) -> int:
        return self.net.cfg.image_size

    def references(self) -> tuple[Tensor, Tensor]:
        """The centred reference masks (built on first use, about a second; then cached)."""
        if self._references is None:
            self._references = reference_masks(self.image_size, tolerance=self.thresholds.border_tolerance)
        return self._references

    @torch.no_grad()
    def probabilities(self, images: Sequence[Image.Image] | Tensor) -> dict[str, Tensor]:
        """The CNN's class probabilities: {attribute: (B, classes)}, classes in :data:`ATTRIBUTES` order."""
        x = to_batch(images, self.image_size)
        return self._probabilities(x)

    def _probabilities(self, x: Tensor) -> dict[str, Tensor]:
        device = next(self.net.parameters()).device
        logits = self.net(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
        return {k: v.softmax(-1) for k, v in self.net.split(logits).items()}

    @torch.no_grad()
    def predict(self, images: Sequence[Image.Image] | Tensor) -> list[dict[str, Any]]:
        """Judge each image: a dict per image with

        - ``shape``, ``color``, ``size``, ``position``: the CNN's answers (English words, :mod:`mmcore.data` keys);
        - ``confidence``: {attribute: probability of that answer};
        - ``clean``: True when the image passes every cleanliness check; ``reasons``: the failed checks, in words;
        - ``clean_score``: the soft IoU (0 to 1) of the object's outline with the best-matching real rendering
          of the predicted shape (real images: about 0.8 to 0.95; blobs and smears: lower);
        - ``measures``: every number the checks looked at (see :class:`CleanMeasures`).
        """
        x = to_batch(images, self.image_size)  # (B, 3, S, S)
        probs = self._probabilities(x)
        best = {k: p.max(-1) for k, p in probs.items()}  # values (B,), indices (B,)
        confidence = torch.stack([best[k].values for k in ("shape", "color", "position")]).amin(0)  # (B,)
        references, reference_shape = self.references()
        m = clean_measures(x, best["shape"].indices, best["color"].indices, confidence, references,
                           reference_shape, self.thresholds)
        reasons = clean_reasons(m, self.thresholds, best["shape"].indices)
        out = []
        for i in range(x.shape[0]):
            row: dict[str, Any] = {k: ATTRIBUTES[k][best[k].indices[i].item()] for k in ATTRIBUTES}
            row["clean"] = not reasons[i]
            row["clean_score"] = round(m.iou[i].item(), 4)
            row["reasons"] = reasons[i]
            row["confidence"] = {k: round(best[k].values[i].item(), 4) for k in ATTRIBUTES}
            row["measures"] = {k: round(float(v[i]), 4) for k, v in m._asdict().items()}
            out.append(row)
        return out

    __call__ = predict

    def fidelity(self, images: Sequence[Image.Image] | Tensor, wanted: Sequence[dict[str, str]] | dict[str, str]) -> float:
        """Fraction of ``images`` that are clean and show what ``wanted`` asks (one dict per image, or one dict
        for all): the shape and colour, and size / position where named. See :func:`matches`."""
        predictions = self.predict(images)
        if isinstance(wanted, dict):
            wanted = [wanted] * len(predictions)
        if len(wanted) != len(predictions):
            raise ValueError(f"{len(predictions)} images but {len(wanted)} wanted-dicts")
        return sum(matches(p, w) for p, w in zip(predictions, wanted)) / len(predictions)

    def report(self, images: Sequence[Image.Image] | Tensor, wanted: Sequence[dict[str, str]]) -> dict[str, float]:
        """Referee ``images`` (one ``wanted`` dict each): the fractions ``fidelity`` (clean and what was asked, as
        :meth:`fidelity`), ``shape``, ``color``, ``shape_color`` (right shape and colour, clean or not) and
        ``clean``; ``images``: how many were judged.

        ``images`` may also be groups (P, k, 3, S, S) with one ``wanted`` dict per group (k pictures per prompt, as
        the generators' ``sample_pair_images`` return them)."""
        if isinstance(images, Tensor) and images.ndim == 5:
            if len(wanted) != images.shape[0]:
                raise ValueError(f"{images.shape[0]} groups of images but {len(wanted)} wanted-dicts")
            wanted = [w for w in wanted for _ in range(images.shape[1])]
            images = images.flatten(0, 1)  # (P * k, 3, S, S)
        predictions = self.predict(images)
        if len(wanted) != len(predictions):
            raise ValueError(f"{len(predictions)} images but {len(wanted)} wanted-dicts")
        count = max(1, len(predictions))
        return {
            "fidelity": sum(matches(p, w) for p, w in zip(predictions, wanted)) / count,
            "shape": sum(p["shape"] == w["shape"] for p, w in zip(predictions, wanted)) / count,
            "color": sum(p["color"] == w["color"] for p, w in zip(predictions, wanted)) / count,
            "shape_color": sum(matches(p, w, require_clean=False) for p, w in zip(predictions, wanted)) / count,
            "clean": sum(bool(p["clean"]) for p in predictions) / count,
            "images": float(len(predictions)),
        }

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, **card: Any) -> Path:
        """Safetensors weights (floating tensors cast to ``dtype`` if given) + card (architecture, thresholds, and
        whatever ``card`` adds)."""
        card = {"model": KIND, "config": asdict(self.net.cfg), "thresholds": asdict(self.thresholds), **card}
        return save_checkpoint(path, self.net.state_dict(), card, dtype)


def available_models() -> list[str]:
    """Names :func:`load` knows without a path."""
    return ["shapes-judge"]


def load(name_or_path: str | os.PathLike = "shapes-judge", device: str | torch.device | None = None) -> Judge:
    """The shipped ``"shapes-judge"`` (``data/checkpoints/``, no network) or a checkpoint path -> :class:`Judge` on
    ``device`` (default: :func:`mmcore.get_device`; it is small: 100 images take a fraction of a second on a CPU).
    Reading safetensors runs no code."""
    path = resolve_checkpoint(name_or_path, "shapes-judge", CHECKPOINT, "judge", "`python -m mmcore.train_judge`")
    state_dict, card = load_checkpoint(path)
    check_kind(card, path, KIND, "judge", legacy=(None,))  # judges saved before cards had a "model" load too
    cfg = card.get("config", {})
    cfg = JudgeConfig(**{**cfg, "channels": tuple(cfg.get("channels", JudgeConfig.channels))})
    net = JudgeNet(cfg)
    check_tensors(state_dict, net.state_dict(), path)
    net.load_state_dict(state_dict)
    net = net.to(device or get_device()).to(memory_format=torch.channels_last)
    return Judge(net, CleanThresholds(**card.get("thresholds", {})), card)
