"""Batched two-view augmentation as plain tensor ops: no per-sample Python, no host reads.

:class:`TensorTwoViewAugment` has the interface of :class:`vssl.augment.gpu.GPUTwoViewAugment`
(uint8 (B, C, H, W) on any device -> two normalised float views) and applies the operations of
:func:`vssl.augment.recipes.view_ops` with their parameters, like the torchvision v2 path
(:class:`vssl.augment.cpu.TwoViewTransform`), but on the whole 2B-image batch at once:

- Every random number of a call comes from ONE ``torch.rand((2B, K), device=x.device)``: the
  global RNG of the input's device, so ``torch.manual_seed`` (and the engine's per-micro-batch
  seeding in :mod:`vssl.train.loader`) makes the views reproducible. Nothing is read back to
  the host, so the call never waits for the device.
- Crop + horizontal flip of both views: one ``F.affine_grid`` + ``F.grid_sample`` (bilinear,
  ``align_corners=False``) over the stacked 2B batch. The crop boxes are drawn like torchvision's
  ``RandomResizedCrop`` (10 attempts at area ~ U(scale) * H * W and log aspect ratio ~
  U(log ratio), integer width and height rounded, the first attempt that fits wins, else the
  centre crop of the clamped ratio; integer offsets uniform). The sampling grid is clamped to
  the box's outermost pixel centres, so an upscaled crop repeats its own border pixels as
  torchvision's resize of the cropped image does. A crop larger than the output is resized
  without antialiasing (torchvision antialiases); the in-memory datasets (32 px CIFAR, 96 px
  STL, 28 px Fashion-MNIST) are cropped at their own size, so crops are never downscaled there.
  torchvision resizes the uint8 crop and rounds it to uint8; this path stays in float (a
  difference of at most half a grey level).
- Colour jitter (p per sample) with torchvision's definitions: brightness ``clamp(b x)``,
  contrast ``clamp(c x + (1 - c) mean(gray(x)))``, saturation ``clamp(s x + (1 - s) gray(x))``,
  hue (shift of H in HSV, torchvision's RGB<->HSV formulas), factors uniform in
  ``[max(0, 1 - v), 1 + v]`` (hue ``[-v, v]``). Order: torchvision draws a random permutation of
  the four per call, i.e. per image here; so does this path: every image gets its own uniformly
  random order. Brightness, contrast and saturation are one per-image "blend" op per slot
  (``clamp(a x + b gray(x) + c mean(gray(x)))`` with the image's coefficients for the op in
  that slot; hue's slot is the identity): three blend passes with the slots after each image's
  hue slot set to the identity, one hue pass, three blend passes with the slots up to it set
  to the identity (no branch per image, no gather of the images by order).
- Grayscale (p; weights 0.2989, 0.587, 0.114 as torchvision), Gaussian blur (p; sigma
  ~ U(sigma) per image; torchvision's kernel; separable depthwise convolutions with reflect
  padding), solarisation (p; ``x >= t -> 1 - x``), all chosen per image with ``torch.where``.
  An op that is absent from one view runs on the other view's half of the batch only.
- Normalisation is written straight into the output, ``channels_last`` by default.
- :meth:`TensorTwoViewAugment.compile_ops` compiles the application (the engine does when it
  compiles the model, ``pretrain.compile``); the parameters are drawn eagerly either way.

:meth:`TensorTwoViewAugment.sample` returns the drawn parameters (per image, for reading them
back in tests) and :meth:`TensorTwoViewAugment.apply` applies given ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vssl.augment.cpu import check_stats
from vssl.augment.recipes import Recipe, view_ops

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop
# Jitter op indices (torchvision's ColorJitter order before its permutation).
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


def _fallback_crop(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's RandomResizedCrop fallback box (w, h) when no attempt fits."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return w, h


def _gray(x: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luminance with torchvision's weights."""
    r, g, b = x.unbind(1)
    w0, w1, w2 = GRAY_WEIGHTS
    return r.mul(w0).add_(g, alpha=w1).add_(b, alpha=w2).unsqueeze(1)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """torchvision v2's ``_rgb_to_hsv`` on (N, 3, H, W): (h, s, v) each (N, H, W)."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    neq_r = maxc != r
    eq_g = maxc == g
    h = torch.where(~neq_r, bc - gc, torch.where(eq_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = (h / 6.0 + 1.0).fmod(1.0)
    return h, s, maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV -> RGB (N, 3, H, W), the piecewise map of torchvision's ``_hsv_to_rgb`` written as
    ``v - v s clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``, n = 5, 3, 1 (R, G, B):
    the same values, without its host-side lookup table."""
    h6 = h * 6.0
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (h6 + n).remainder(6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, 1).clamp(0.0, 1.0)


def _adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """torchvision's adjust_hue with a per-image shift (N,) in [-0.5, 0.5]."""
    h, s, v = _rgb_to_hsv(x)
    h = (h + shift.view(-1, 1, 1)).remainder(1.0)
    return _hsv_to_rgb(h, s, v)


def _gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """(N, k) torchvision Gaussian kernels (``_get_gaussian_kernel1d``) for per-image sigma."""
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    t = torch.linspace(-lim, lim, kernel_size, device=sigma.device, dtype=torch.float32)
    return torch.softmax(-((t / sigma.view(-1, 1)) ** 2), dim=1)


def _blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) with per-image sigma, reflect padding."""
    n, c, hh, ww = x.shape
    r = kernel_size // 2
    # (N*C, k); expand + reshape, not repeat_interleave (whose CUDA kernel reads a size back)
    k = _gaussian_kernels(sigma, kernel_size).unsqueeze(1).expand(n, c, kernel_size)
    k = k.reshape(n * c, kernel_size)
    y = F.pad(x, (r, r, r, r), mode="reflect").reshape(1, n * c, hh + 2 * r, ww + 2 * r)
    y = F.conv2d(y, k.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, hh, ww)


class TensorTwoViewAugment(nn.Module):
    """``module(x_uint8) -> (v1, v2)``: uint8 (B, C, H, W) on any device to two normalised
    float views (B, C, size, size) (``channels_last`` unless told otherwise); same recipe and op
    parameters as :class:`~vssl.augment.cpu.TwoViewTransform`, see the module docstring for how
    each op is batched."""

    def __init__(
        self,
        recipe: Recipe,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        check_stats(recipe, mean, std)
        self.recipe = recipe
        self.channels_last = bool(channels_last)
        self.ops: list[dict[str, dict[str, Any]]] = [
            dict(view_ops(recipe, v)) for v in recipe.views
        ]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer(
            "inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        )
        # Columns of the one uniform draw per image.
        names = [f"area{k}" for k in range(CROP_ATTEMPTS)]
        names += [f"ratio{k}" for k in range(CROP_ATTEMPTS)]
        names += ["top", "left", "flip", "jitter", "b", "c", "s", "h"]
        names += ["order0", "order1", "order2", "order3", "gray", "blur", "sigma", "solarize"]
        self._col = {n: i for i, n in enumerate(names)}
        self._compiled: Any = None  # compile_ops()
        self._compiled_photometric: Any = None

    # -- parameters ----------------------------------------------------------------------------

    def _p(self, op: str) -> tuple[float, float]:
        """The op's probability in each view (0 where the view lacks it)."""
        v1, v2 = (float(v[op]["p"]) if op in v else 0.0 for v in self.ops)
        return v1, v2

    def _arg(self, op: str, key: str, default: Any) -> tuple[Any, Any]:
        """The op's parameter ``key`` in each view (``default`` where the view lacks it)."""
        v1, v2 = (v[op][key] if op in v else default for v in self.ops)
        return v1, v2

    @staticmethod
    def _per_view(view2: Tensor, values: tuple[float, float]) -> Tensor | float:
        """A per-image value: a Python number when both views agree (folded into the kernels),
        else ``where(view2, v2, v1)``."""
        a, b = float(values[0]), float(values[1])
        if a == b:
            return a
        return torch.where(view2, b, a)

    def sample(self, batch: int, height: int, width: int, device: torch.device | str) -> dict:
        """Per-image parameters of both views of a ``batch`` of ``height`` x ``width`` images:
        rows 0..B-1 are view 1, rows B..2B-1 view 2. Keys: ``top left h w`` (float crop boxes,
        integer-valued), ``flip jitter gray blur solarize`` (bool), ``factors`` (2B, 4:
        brightness, contrast, saturation, hue), ``order`` (2B, 4: op index per slot), ``sigma``.
        One ``torch.rand`` on ``device``; nothing is read back."""
        n = 2 * batch
        col = self._col
        u = torch.rand(n, len(col), device=device)
        view2 = (torch.arange(n, device=device) >= batch).unsqueeze(1)  # (2B, 1)
        pv = self._per_view

        # Crop boxes: torchvision's RandomResizedCrop, all attempts at once.
        scale = [self.ops[v]["crop"]["scale"] for v in (0, 1)]
        ratio = [self.ops[v]["crop"]["ratio"] for v in (0, 1)]
        lo, hi = pv(view2, (scale[0][0], scale[1][0])), pv(view2, (scale[0][1], scale[1][1]))
        log_r = [(math.log(r[0]), math.log(r[1])) for r in ratio]
        r0, r1 = pv(view2, (log_r[0][0], log_r[1][0])), pv(view2, (log_r[0][1], log_r[1][1]))
        attempts = slice(col["area0"], col["area0"] + CROP_ATTEMPTS)
        ratios = slice(col["ratio0"], col["ratio0"] + CROP_ATTEMPTS)
        target = (height * width) * (lo + (hi - lo) * u[:, attempts])
        aspect = torch.exp(r0 + (r1 - r0) * u[:, ratios])
        w = torch.round(torch.sqrt(target * aspect))
        h = torch.round(torch.sqrt(target / aspect))
        ok = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
        first = ok.to(torch.uint8).argmax(1, keepdim=True)  # the first attempt that fits
        found = ok.any(1)
        fb = [_fallback_crop(height, width, ratio[v]) for v in (0, 1)]
        view2 = view2.squeeze(1)
        w = torch.where(found, w.gather(1, first).squeeze(1), pv(view2, (fb[0][0], fb[1][0])))
        h = torch.where(found, h.gather(1, first).squeeze(1), pv(view2, (fb[0][1], fb[1][1])))
        top = torch.minimum(torch.floor(u[:, col["top"]] * (height - h + 1)), height - h)
        left = torch.minimum(torch.floor(u[:, col["left"]] * (width - w + 1)), width - w)
        top = torch.where(found, top, torch.div(height - h, 2, rounding_mode="floor"))
        left = torch.where(found, left, torch.div(width - w, 2, rounding_mode="floor"))
        out: dict[str, Tensor] = {"top": top, "left": left, "h": h, "w": w}

        out["flip"] = u[:, col["flip"]] < pv(view2, self._p("hflip"))
        out["jitter"] = u[:, col["jitter"]] < pv(view2, self._p("jitter"))
        factors = []
        for key in ("brightness", "contrast", "saturation"):
            v1, v2 = self._arg("jitter", key, 0.0)
            a = pv(view2, (max(0.0, 1.0 - v1), max(0.0, 1.0 - v2)))
            b = pv(view2, (1.0 + v1, 1.0 + v2))
            factors.append(a + (b - a) * u[:, col[key[0]]])
        hv = pv(view2, self._arg("jitter", "hue", 0.0))
        factors.append(hv * (2.0 * u[:, col["h"]] - 1.0))
        out["factors"] = torch.stack(factors, 1)
        # A uniformly random permutation per image: argsort of 4 uniforms.
        out["order"] = u[:, col["order0"] : col["order3"] + 1].argsort(1)
        out["gray"] = u[:, col["gray"]] < pv(view2, self._p("grayscale"))
        out["blur"] = u[:, col["blur"]] < pv(view2, self._p("blur"))
        s_lo = pv(view2, tuple(s[0] for s in self._arg("blur", "sigma", (1.0, 1.0))))
        s_hi = pv(view2, tuple(s[1] for s in self._arg("blur", "sigma", (1.0, 1.0))))
        out["sigma"] = s_lo + (s_hi - s_lo) * u[:, col["sigma"]]
        out["solarize"] = u[:, col["solarize"]] < pv(view2, self._p("solarize"))
        return out

    # -- application ---------------------------------------------------------------------------

    def _rows(self, op: str, n: int) -> slice | None:
        """The rows of the 2B batch an op can touch (None: no view has it)."""
        p = self._p(op)
        if p[0] > 0 and p[1] > 0:
            return slice(0, n)
        if p[0] > 0:
            return slice(0, n // 2)
        if p[1] > 0:
            return slice(n // 2, n)
        return None

    @staticmethod
    def _blend_slot(x: Tensor, factors: Tensor, op: Tensor) -> Tensor:
        """One jitter slot for every image: the brightness, contrast or saturation op that
        ``op`` (N,) names for it with its factor, identity for ``HUE``:
        ``clamp(a x + b gray(x) + c mean(gray(x)), 0, 1)``."""
        f = factors.gather(1, op.view(-1, 1)).view(-1, 1, 1, 1)
        op = op.view(-1, 1, 1, 1)
        a = torch.where(op == HUE, 1.0, f)
        b = torch.where(op == SATURATION, 1.0 - f, 0.0)
        c = torch.where(op == CONTRAST, 1.0 - f, 0.0)
        g = _gray(x)
        rest = torch.addcmul(c * g.mean((2, 3), keepdim=True), b, g)  # (N, 1, H, W)
        return torch.addcmul(rest, a, x).clamp_(0.0, 1.0)

    def _jitter(self, x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
        """Brightness, contrast, saturation and hue in each image's own ``order``."""
        hue_used = any(v["jitter"]["hue"] > 0 for v in self.ops if "jitter" in v)
        if not hue_used:
            for k in range(4):
                x = self._blend_slot(x, factors, order[:, k])
            return x
        hue_at = (order == HUE).to(torch.uint8).argmax(1)  # each image's hue slot
        # The slots before hue (those after it act as identity), then hue, then the rest.
        for k in range(3):
            x = self._blend_slot(x, factors, torch.where(hue_at > k, order[:, k], HUE))
        x = _adjust_hue(x, factors[:, HUE])
        for k in range(1, 4):
            x = self._blend_slot(x, factors, torch.where(hue_at < k, order[:, k], HUE))
        return x

    @torch.no_grad()
    def apply(self, x: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Both views of uint8 (B, C, H, W) ``x`` under ``params`` (:meth:`sample`)."""
        bsz, ch, height, width = x.shape
        n, size = 2 * bsz, self.recipe.size
        xf = x.float().mul_(1.0 / 255.0)
        xf = torch.cat([xf, xf])

        # Crop + flip: one affine grid over 2B images; the grid is clamped to the box's
        # outermost pixel centres (normalised coordinates, align_corners=False).
        top, left, h, w = params["top"], params["left"], params["h"], params["w"]
        sx, sy = w / width, h / height
        tx, ty = (2 * left + w) / width - 1.0, (2 * top + h) / height - 1.0
        sign = torch.where(params["flip"], -1.0, 1.0)
        zero = torch.zeros_like(sx)
        theta = torch.stack([sx * sign, zero, tx, zero, sy, ty], 1).view(n, 2, 3)
        grid = F.affine_grid(theta, [n, ch, size, size], align_corners=False)
        lo = torch.stack([(2 * left + 1) / width - 1.0, (2 * top + 1) / height - 1.0], 1)
        hi = torch.stack(
            [(2 * (left + w) - 1) / width - 1.0, (2 * (top + h) - 1) / height - 1.0], 1
        )
        grid = torch.maximum(torch.minimum(grid, hi.view(n, 1, 1, 2)), lo.view(n, 1, 1, 2))
        y = F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self._photometric(y, params)

    @torch.no_grad()
    def apply_photometric(
        self, x1: Tensor, x2: Tensor, params: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The recipe after the crop and flip, on views that have had them (uint8 (B, C, size,
        size) each, e.g. from :class:`~vssl.augment.cpu.TwoViewCrops`), under ``params``
        (:meth:`sample`; its crop boxes and flips are not used)."""
        y = torch.cat([x1, x2]).float().mul_(1.0 / 255.0)
        return self._photometric(y, params)

    def _photometric(self, y: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Jitter, grayscale, blur, solarisation and normalisation of the 2B float views ``y``
        (view 1 in the first half) in [0, 1]."""
        n, ch, size = y.shape[0], y.shape[1], y.shape[-1]
        bsz = n // 2
        if ch == 3:
            rows = self._rows("jitter", n)
            if rows is not None:
                part = y[rows]
                jittered = self._jitter(part, params["factors"][rows], params["order"][rows])
                y[rows] = torch.where(params["jitter"][rows].view(-1, 1, 1, 1), jittered, part)
            rows = self._rows("grayscale", n)
            if rows is not None:
                part = y[rows]
                y[rows] = torch.where(params["gray"][rows].view(-1, 1, 1, 1), _gray(part), part)
        rows = self._rows("blur", n)
        if rows is not None:
            part = y[rows]
            k = self.ops[0].get("blur", self.ops[1].get("blur"))["kernel_size"]
            blurred = _blur(part, params["sigma"][rows], k)
            y[rows] = torch.where(params["blur"][rows].view(-1, 1, 1, 1), blurred, part)
        rows = self._rows("solarize", n)
        if rows is not None:
            part = y[rows]
            t = self._per_view(
                (torch.arange(n, device=y.device) >= bsz)[rows].view(-1, 1, 1, 1),
                self._arg("solarize", "threshold", 1.0),
            )
            flip = params["solarize"][rows].view(-1, 1, 1, 1) & (part >= t)
            y[rows] = torch.where(flip, 1.0 - part, part)

        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.empty((n, ch, size, size), device=y.device, memory_format=fmt)
        torch.mul(y - self.mean, self.inv_std, out=out)
        return out[:bsz], out[bsz:]

    def _check(self, x: Tensor, name: str) -> None:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != self.recipe.channels:
            raise TypeError(
                f"TensorTwoViewAugment expects uint8 (B, {self.recipe.channels}, H, W) {name}, "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        if self.mean.device != x.device:
            self.to(x.device)

    @torch.no_grad()
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "images")
        params = self.sample(x.shape[0], x.shape[2], x.shape[3], x.device)
        return (self._compiled or self.apply)(x, params)

    @torch.no_grad()
    def photometric(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        """The rest of the recipe on views already cropped and flipped (uint8 (B, C, size,
        size) each, :class:`~vssl.augment.cpu.TwoViewCrops`): jitter, grayscale, blur,
        solarisation, normalisation, with parameters drawn as in :meth:`forward`."""
        size = self.recipe.size
        for x, name in ((x1, "view 1"), (x2, "view 2")):
            self._check(x, name)
            if tuple(x.shape[2:]) != (size, size) or x.shape[0] != x1.shape[0]:
                raise TypeError(
                    f"photometric() expects both views as ({x1.shape[0]}, "
                    f"{self.recipe.channels}, {size}, {size}), got {name} {tuple(x.shape)}"
                )
        params = self.sample(x1.shape[0], size, size, x1.device)
        return (self._compiled_photometric or self.apply_photometric)(x1, x2, params)

    def compile_ops(self) -> None:
        """``torch.compile`` :meth:`apply` and :meth:`apply_photometric` (their ~150
        elementwise kernels fuse into a few; the parameters are still drawn eagerly, so the
        random streams are those of eager mode). A graph that fails to compile runs eagerly
        (dynamo's ``suppress_errors``)."""
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        self._compiled = torch.compile(self.apply, dynamic=False)
        self._compiled_photometric = torch.compile(self.apply_photometric, dynamic=False)

    def extra_repr(self) -> str:
        return f"{self.recipe.name}: view1={self.ops[0]}, view2={self.ops[1]}"
