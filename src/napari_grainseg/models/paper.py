"""The published networks of Saleh et al. (2025) as a baseline, rebuilt in PyTorch.

The authors released their two trained MATLAB networks (CC0); converted to
numpy they live outside this package (``seed_nets.npz`` with its layer list
``spec_json``). The weights are not shipped: pass the path of the ``.npz``, or
set ``GRAINSEG_PAPER_NETS`` (:func:`paper_nets_path`).

- :class:`PaperNet1`: encoder-decoder without skip connections, 96x496x3
  edge image (0/255) -> boundary map (0-255, clipped ReLU at 255).
- :class:`PaperNet2`: the small denoising autoencoder ("diffusion model")
  applied as a fixed-point iteration to Net1's output.
- :func:`paper_pipeline`: the authors' inference script (resize to 96x496,
  edge fusion, Net1, Net2 until it settles, threshold, closing, resize back).

Layer semantics follow MATLAB: 'same' convolution padding from
``PaddingSize`` (top, bottom, left, right), 'same' max-pooling pads at the
bottom/right, transposed convolutions crop ``CroppingSize``. MATLAB weights
``W`` (H, W, Cin, Cout) become PyTorch (Cout, Cin, H, W) by
``W.transpose(3, 2, 0, 1)`` without flipping the kernel (for a transposed
convolution MATLAB's (H, W, Cout, Cin) becomes PyTorch's (Cin, Cout, H, W)).

Net2's input scale. Net2 subtracts ``AverageImage`` = 27.4 from its input:
that is the mean of a 0/255 boundary image with ~11 % boundary pixels, so the
network was trained on 0-255 input; its clipped ReLU caps the output at 1, so
it answers on a 0-1 scale. Feeding the 0-1 output back unscaled leaves the
input 27 units below the training mean everywhere and the map collapses
(measured on the bundled micrograph: all-zero after one step). The pipeline
therefore feeds ``255 * y`` back, keeps every state on the 0-1 scale, stops
when the mean absolute change is below ``tol`` (0.3 % of full scale) and
thresholds at 0.2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from napari_grainseg.errors import InputError

#: Environment variable naming the converted published networks (``seed_nets.npz``).
PAPER_NETS_ENV = "GRAINSEG_PAPER_NETS"
#: The published networks below ``shared/data`` (:func:`~napari_grainseg.io.shared_data.find_shared_data`).
PAPER_NETS_SHARED = Path("seed_nets") / "seed_nets.npz"

#: Input size (rows, columns) of both published networks.
PAPER_SHAPE: tuple[int, int] = (96, 496)


# --------------------------------------------------------------------------- MATLAB layers


class MatlabConv2d(nn.Conv2d):
    """Convolution with MATLAB's explicit (top, bottom, left, right) zero padding."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int, int, int]
    ):
        top, bottom, left, right = padding
        symmetric = top == bottom and left == right
        super().__init__(cin, cout, kernel, stride=stride, padding=(top, left) if symmetric else 0)
        self._pad = None if symmetric else (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return super().forward(x)


class MatlabConvTranspose2d(nn.ConvTranspose2d):
    """Transposed convolution followed by MATLAB's (top, bottom, left, right) cropping."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int], cropping: tuple[int, int, int, int]
    ):
        super().__init__(cin, cout, kernel, stride=stride)
        self._crop = tuple(int(c) for c in cropping)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        top, bottom, left, right = self._crop
        if any(self._crop):
            y = y[..., top : y.shape[-2] - bottom, left : y.shape[-1] - right]
        return y


def _ints(values) -> tuple[int, ...]:
    return tuple(int(round(v)) for v in values)


def _build_layer(layer: dict) -> nn.Module | None:
    """One PyTorch module for a MATLAB layer description (``None`` for input/output layers)."""
    cls = layer["class"]
    if cls == "Convolution2DLayer":
        if _ints(layer.get("DilationFactor", (1, 1))) != (1, 1):
            raise InputError(f"layer {layer['name']}: dilated convolutions are not supported")
        return MatlabConv2d(
            int(layer["NumChannels"]),
            int(layer["NumFilters"]),
            _ints(layer["FilterSize"]),
            _ints(layer["Stride"]),
            _ints(layer["PaddingSize"]),
        )
    if cls == "TransposedConvolution2DLayer":
        if any(_ints(layer.get("OutputSizeOffset", (0, 0)))):
            raise InputError(f"layer {layer['name']}: OutputSizeOffset is not supported")
        return MatlabConvTranspose2d(
            int(layer["NumChannels"]),
            int(layer["NumFilters"]),
            _ints(layer["FilterSize"]),
            _ints(layer["Stride"]),
            _ints(layer["CroppingSize"]),
        )
    if cls == "BatchNormalizationLayer":
        return nn.BatchNorm2d(int(layer["NumChannels"]), eps=float(layer["Epsilon"]))
    if cls == "ReLULayer":
        return nn.ReLU()
    if cls == "ClippedReLULayer":
        return nn.Hardtanh(0.0, float(layer["Ceiling"]))
    if cls == "MaxPooling2DLayer":
        pad = _ints(layer["PaddingSize"])
        if layer.get("PaddingMode") != "same" and any(pad):
            raise InputError(f"layer {layer['name']}: manual max-pool padding is not supported")
        # MATLAB 'same' pooling pads bottom/right so that out = ceil(in / stride): ceil_mode.
        return nn.MaxPool2d(
            _ints(layer["PoolSize"]), _ints(layer["Stride"]), ceil_mode=layer.get("PaddingMode") == "same"
        )
    if cls in ("ImageInputLayer", "RegressionOutputLayer"):
        return None
    raise InputError(f"unsupported MATLAB layer class {cls} ({layer['name']})")


class _PaperNet(nn.Module):
    """A chain of MATLAB layers; subclasses fix which network of the spec it is."""

    key: str = ""

    def __init__(self, spec: dict | list):
        super().__init__()
        layers = spec[self.key] if isinstance(spec, dict) else spec
        self.spec = layers
        inp = layers[0]
        if inp["class"] != "ImageInputLayer":
            raise InputError(f"{self.key}: the first layer must be an ImageInputLayer")
        self.input_size = _ints(inp["InputSize"])  # (H, W, C)
        self.register_buffer("average", torch.zeros(()))
        self.zerocenter = inp.get("Normalization", "none") == "zerocenter"
        if inp.get("Normalization", "none") not in ("none", "zerocenter"):
            raise InputError(f"{self.key}: unsupported input normalisation {inp['Normalization']}")
        self.body = nn.Sequential()
        self._index: dict[int, str] = {}
        for layer in layers[1:]:
            module = _build_layer(layer)
            if module is not None:
                name = f"l{int(layer['idx']):02d}"
                self.body.add_module(name, module)
                self._index[int(layer["idx"])] = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input and output (N, C, H, W) in the MATLAB network's own units."""
        if self.zerocenter:
            x = x - self.average
        return self.body(x)

    @torch.no_grad()
    def load_arrays(self, arrays) -> _PaperNet:
        """Copy the MATLAB-layout parameters ``{key}_{NN}_*`` from a mapping of arrays."""
        prefix = self.key
        if self.zerocenter:
            self.average.fill_(float(np.asarray(arrays[f"{prefix}_00_AverageImage"]).mean()))
        for idx, name in self._index.items():
            module = self.body.get_submodule(name)
            tag = f"{prefix}_{idx:02d}"
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                w = np.asarray(arrays[f"{tag}_W"], np.float32)
                kh, kw = module.kernel_size
                if isinstance(module, nn.ConvTranspose2d):
                    w = w.reshape(kh, kw, module.out_channels, module.in_channels)
                else:
                    w = w.reshape(kh, kw, module.in_channels, module.out_channels)  # 1x1xCin(x1) squeezed
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))))
                module.bias.copy_(torch.from_numpy(np.asarray(arrays[f"{tag}_b"], np.float32).ravel()))
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.from_numpy(np.asarray(arrays[f"{tag}_mean"]).ravel()))
                module.running_var.copy_(torch.from_numpy(np.asarray(arrays[f"{tag}_var"]).ravel()))
                module.weight.copy_(torch.from_numpy(np.asarray(arrays[f"{tag}_scale"]).ravel()))
                module.bias.copy_(torch.from_numpy(np.asarray(arrays[f"{tag}_offset"]).ravel()))
        return self


class PaperNet1(_PaperNet):
    """The published Net1: (N, 3, 96, 496) edge image with values 0/255 -> (N, 1, 96, 496) in 0-255."""

    key = "net1"


class PaperNet2(_PaperNet):
    """The published Net2: (N, 1, 96, 496) boundary map in 0-255 -> (N, 1, 96, 496) in 0-1.

    The 'zerocenter' input normalisation subtracts ``average`` (27.37) first.
    """

    key = "net2"


def n_weights(net: nn.Module) -> int:
    """Number of learned parameters (convolution weights and biases, BN scale and offset)."""
    return sum(p.numel() for p in net.parameters())


def paper_nets_path(npz_path: str | Path | None = None) -> Path | None:
    """The published networks' file: ``npz_path``, else ``$GRAINSEG_PAPER_NETS``, else the shared
    data of a development checkout (:func:`~napari_grainseg.io.shared_data.find_shared_data`; never
    the working folder); None if none is given or found."""
    from napari_grainseg.io.shared_data import find_shared_data

    if npz_path is not None:
        return Path(npz_path)
    return find_shared_data(PAPER_NETS_SHARED, env=PAPER_NETS_ENV, accept=Path.is_file)


def load_paper_nets(npz_path: str | Path | None = None) -> tuple[PaperNet1, PaperNet2]:
    """Build both published networks from ``seed_nets.npz`` and return them in eval mode.

    ``npz_path`` defaults to :func:`paper_nets_path`.

    Raises
    ------
    InputError
        If the file is not given or found, does not exist or is not the converted network archive.
    """
    path = paper_nets_path(npz_path)
    if path is None:
        raise InputError(
            f"published networks (seed_nets.npz) not found: pass their path (--paper-nets) or set {PAPER_NETS_ENV}"
        )
    if not path.is_file():
        raise InputError(f"published network file not found: {path}")
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # corrupt archive
        raise InputError(f"cannot read {path}: {exc}") from None
    if "spec_json" not in arrays:
        raise InputError(f"{path} has no 'spec_json' layer list: not a converted paper network archive")
    spec = json.loads(str(arrays["spec_json"]))
    try:
        net1 = PaperNet1(spec).load_arrays(arrays).eval()
        net2 = PaperNet2(spec).load_arrays(arrays).eval()
    except KeyError as exc:
        raise InputError(f"{path} lacks the parameter {exc.args[0]}") from None
    return net1, net2


# --------------------------------------------------------------------------- pipeline


def _resize(img: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(
        img,
        shape,
        order=order,
        mode="edge",
        anti_aliasing=order > 0 and (shape[0] < img.shape[0] or shape[1] < img.shape[1]),
        preserve_range=True,
    )


def paper_pipeline(
    image: np.ndarray,
    net1: PaperNet1,
    net2: PaperNet2,
    *,
    max_iterations: int = 100,
    tol: float = 0.003,
    threshold: float = 0.2,
    closing_radius: int = 2,
) -> dict:
    """Run the authors' inference on one micrograph.

    Steps: grayscale, resize to 96x496 (bicubic with anti-aliasing, as MATLAB's
    ``imresize``), edge fusion (contrast stretch, 7x7 median, Sobel/LoG/Canny;
    :func:`napari_grainseg.segmentation.edges.detect_edges`), Net1, then Net2 repeatedly on
    its own output (``y <- Net2(255 y)``, see the module notes) until the mean
    absolute change is below ``tol`` (fraction of full scale) or
    ``max_iterations`` is reached; threshold at ``threshold``, closing with a
    disk of radius ``closing_radius``, resize back (nearest neighbour).

    Returns
    -------
    dict
        ``boundaries`` (bool, original size), ``probability`` (float32 in [0, 1],
        original size, bilinear), ``iterations`` (Net2 applications),
        ``changes`` (mean absolute change after each one), ``converged``,
        ``net1_output`` (float32 96x496 in [0, 1]), ``net2_output`` (same, final
        state before thresholding) and ``fused`` (the 96x496x3 edge image).
    """
    import cv2
    from skimage.morphology import disk

    from napari_grainseg.io.validate import validate_image
    from napari_grainseg.segmentation.edges import detect_edges

    gray = validate_image(image)
    if max_iterations < 1:
        raise InputError(f"max_iterations must be >= 1, got {max_iterations}")
    small = _resize(gray, PAPER_SHAPE, order=3).astype(np.float32)
    fused = detect_edges(small).fused()
    param = next(net1.parameters())
    x = torch.from_numpy(fused.transpose(2, 0, 1)[None].astype(np.float32)).to(param.device, param.dtype)
    changes: list[float] = []
    with torch.inference_mode():
        y = net1(x) / 255.0
        net1_out = y
        for _ in range(max_iterations):
            new = net2(y * 255.0)
            changes.append(float((new - y).abs().mean()))
            y = new
            if changes[-1] < tol:
                break
    prob_small = y[0, 0].float().cpu().numpy()
    # cv2's default border acts as MATLAB's imclose: no erosion from outside the image.
    mask_small = cv2.morphologyEx(
        (prob_small > threshold).astype(np.uint8), cv2.MORPH_CLOSE, disk(closing_radius).astype(np.uint8)
    ).astype(bool)
    h, w = gray.shape
    boundaries = _resize(mask_small.astype(np.float32), (h, w), order=0) > 0.5
    probability = np.clip(_resize(prob_small, (h, w), order=1), 0, 1).astype(np.float32)
    return dict(
        boundaries=boundaries,
        probability=probability,
        iterations=len(changes),
        changes=changes,
        converged=bool(changes[-1] < tol),
        net1_output=net1_out[0, 0].float().cpu().numpy(),
        net2_output=prob_small,
        fused=fused,
    )
