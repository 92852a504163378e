"""SSD: Single Shot MultiBox Detector (Liu et al., 2016), built as the well-known PyTorch SSD tutorial builds it.

``SSD300(n_classes)`` is the paper's network: a VGG16 base whose fc6/fc7 become dilated convolutions
conv6/conv7, an L2-normalised conv4_3 with a learned per-channel scale, auxiliary convolutions down to 1x1,
and 3x3 prediction convolutions on six feature maps (38, 19, 10, 5, 3, 1) giving 8732 priors. The same class
takes a ResNet base (``backbone="resnet18" | "resnet34" | "resnet50"``) and a small batch-normalised
configuration (``backbone="tiny"``, 160x160 input) that trains on a laptop CPU in minutes.

The heavy lifting of detection is in detops ops: :meth:`SSD300.detect_objects` is a softmax, one
:func:`detops.decode_boxes` and one batched :func:`detops.multiclass_nms` for the whole batch.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import detops
from detops.coding import SSD_WEIGHTS
from detops.nms import multiclass_nms
from detops.ssd.priors import PRESETS, preset_prior_boxes

BACKBONES = ("vgg16", "resnet18", "resnet34", "resnet50", "tiny")


class L2Norm(nn.Module):
    """Normalises each position's channel vector to unit L2 norm and multiplies it by a learned per-channel
    scale initialised to ``init_scale`` (20 for conv4_3, as in ParseNet and the paper)."""

    def __init__(self, channels: int, init_scale: float = 20.0, eps: float = 1e-10):
        super().__init__()
        self.eps = eps
        self.rescale_factors = nn.Parameter(torch.full((1, channels, 1, 1), float(init_scale)))

    def forward(self, x: Tensor) -> Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(self.eps)
        return x / norm * self.rescale_factors


# ------------------------------------------------------------------------------------------------ bases


class VGGBase(nn.Module):
    """VGG16 convolutions up to conv5_3, pool5 as 3x3 stride 1, fc6 -> conv6 (3x3, dilation 6), fc7 -> conv7
    (1x1). Returns the conv4_3 (38x38x512) and conv7 (19x19x1024) maps for a 300x300 input."""

    # (name, in, out) per conv; "M" is a 2x2 max pool, "C" the same with ceil_mode (38 -> 19 at pool3).
    CFG = [
        ("conv1_1", 3, 64),
        ("conv1_2", 64, 64),
        "M",
        ("conv2_1", 64, 128),
        ("conv2_2", 128, 128),
        "M",
        ("conv3_1", 128, 256),
        ("conv3_2", 256, 256),
        ("conv3_3", 256, 256),
        "C",
        ("conv4_1", 256, 512),
        ("conv4_2", 512, 512),
        ("conv4_3", 512, 512),
        "M",
        ("conv5_1", 512, 512),
        ("conv5_2", 512, 512),
        ("conv5_3", 512, 512),
    ]
    CONV_NAMES = [c[0] for c in CFG if isinstance(c, tuple)]
    out_channels = (512, 1024)

    def __init__(self):
        super().__init__()
        for c in self.CFG:
            if isinstance(c, tuple):
                setattr(self, c[0], nn.Conv2d(c[1], c[2], kernel_size=3, padding=1))
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6)
        self.conv7 = nn.Conv2d(1024, 1024, kernel_size=1)

    def forward(self, x: Tensor) -> List[Tensor]:
        conv4_3 = None
        for c in self.CFG:
            if c == "M":
                x = F.max_pool2d(x, 2, 2)
            elif c == "C":
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            else:
                x = F.relu(getattr(self, c[0])(x))
                if c[0] == "conv4_3":
                    conv4_3 = x
        x = F.relu(self.conv6(self.pool5(x)))
        x = F.relu(self.conv7(x))
        return [conv4_3, x]


class ResNetBase(nn.Module):
    """A torchvision ResNet (no weights downloaded) cut into three maps: layer2 (stride 8, 38x38 at 300),
    layer3 (stride 16, 19x19) and layer4 (stride 32, 10x10)."""

    def __init__(self, name: str, weights_path: Optional[str] = None):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        if weights_path is not None:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4
        expansion = 4 if name == "resnet50" else 1
        self.out_channels = (128 * expansion, 256 * expansion, 512 * expansion)

    def forward(self, x: Tensor) -> List[Tensor]:
        c3 = self.layer2(self.stem(x))
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


def _conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3, padding: Optional[int] = None) -> nn.Sequential:
    padding = kernel // 2 if padding is None else padding
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TinyBase(nn.Module):
    """A narrow batch-normalised VGG-style base for 160x160 input: maps of 20x20x64 and 10x10x128."""

    out_channels = (64, 128)

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(
            _conv_bn(3, w, 2),
            _conv_bn(w, 2 * w, 2),
            _conv_bn(2 * w, 2 * w),
            _conv_bn(2 * w, 4 * w, 2),
            _conv_bn(4 * w, 4 * w),
        )  # 20x20
        self.stage2 = nn.Sequential(_conv_bn(4 * w, 8 * w, 2), _conv_bn(8 * w, 8 * w))  # 10x10
        self.out_channels = (4 * w, 8 * w)

    def forward(self, x: Tensor) -> List[Tensor]:
        a = self.stage1(x)
        return [a, self.stage2(a)]


class AuxiliaryConvolutions(nn.Module):
    """Extra feature maps after the base: per stage a 1x1 reduction then a 3x3 convolution (stride 2 with
    padding 1, or stride 1 without padding), as conv8_x to conv11_x of the paper."""

    def __init__(self, in_channels: int, stages: Sequence[Tuple[int, int, int, int]], batch_norm: bool = False):
        # stages: (mid, out, stride, padding)
        super().__init__()
        self.stages = nn.ModuleList()
        self.out_channels = []
        cin = in_channels
        for mid, out, stride, padding in stages:
            if batch_norm:
                stage = nn.Sequential(_conv_bn(cin, mid, 1, 1, 0), _conv_bn(mid, out, stride, 3, padding))
            else:
                stage = nn.Sequential(
                    nn.Conv2d(cin, mid, 1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(mid, out, 3, stride, padding),
                    nn.ReLU(inplace=True),
                )
            self.stages.append(stage)
            self.out_channels.append(out)
            cin = out
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> List[Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class PredictionConvolutions(nn.Module):
    """3x3 convolutions predicting, for every prior of every map, 4 box offsets and ``n_classes`` scores."""

    def __init__(self, in_channels: Sequence[int], n_boxes: Sequence[int], n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.loc = nn.ModuleList(nn.Conv2d(c, n * 4, 3, padding=1) for c, n in zip(in_channels, n_boxes))
        self.cl = nn.ModuleList(nn.Conv2d(c, n * n_classes, 3, padding=1) for c, n in zip(in_channels, n_boxes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        b = feats[0].size(0)
        # [B, n*4, H, W] -> [B, H, W, n*4] -> [B, H*W*n, 4]: the prior order is row, column, box.
        locs = [l(f).permute(0, 2, 3, 1).reshape(b, -1, 4) for l, f in zip(self.loc, feats)]
        scores = [c(f).permute(0, 2, 3, 1).reshape(b, -1, self.n_classes) for c, f in zip(self.cl, feats)]
        return torch.cat(locs, dim=1), torch.cat(scores, dim=1)


# -------------------------------------------------------------------------------------------------- SSD


class SSD300(nn.Module):
    """The SSD detector.

    Args:
        n_classes (int): number of classes including the background (class 0); 21 for VOC.
        backbone (str): ``"vgg16"`` (the paper), ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` (300x300
            input, 8732 priors) or ``"tiny"`` (160x160 input, 2390 priors, batch norm; trains on a CPU).
        backbone_weights (str, optional): a torchvision state dict file for the base (VGG16 via
            :func:`load_vgg16_weights`, ResNet loaded directly). Nothing is ever downloaded.
        width (int): channel width of the tiny base (16 by default).

    Attributes:
        input_size (int): the square input side the priors are laid out for.
        priors_cxcy (Tensor[P, 4]): priors in center-size fractional coordinates (a buffer, not saved).
    """

    def __init__(
        self, n_classes: int, backbone: str = "vgg16", backbone_weights: Optional[str] = None, width: int = 16
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if int(n_classes) < 2:
            raise ValueError(f"n_classes counts the background and must be at least 2, got {n_classes}")
        # What rebuilds this architecture (checkpoints store it); the backbone weights file is not part of it,
        # the checkpoint's state dict holds the weights.
        self.init_args = {"n_classes": int(n_classes), "backbone": backbone, "width": int(width)}
        self.n_classes = n_classes
        self.backbone = backbone
        if backbone == "vgg16":
            self.base = VGGBase()
            self.l2_norm = L2Norm(512)
            self.aux_convs = AuxiliaryConvolutions(
                1024, [(256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0)]
            )
            self.preset, self.input_size = "ssd300", 300
        elif backbone.startswith("resnet"):
            self.base = ResNetBase(backbone)
            self.l2_norm = nn.Identity()
            self.aux_convs = AuxiliaryConvolutions(
                self.base.out_channels[-1], [(256, 512, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0)], batch_norm=True
            )
            self.preset, self.input_size = "ssd300", 300
        else:
            self.base = TinyBase(width)
            self.l2_norm = nn.Identity()
            c = self.base.out_channels[-1]
            self.aux_convs = AuxiliaryConvolutions(
                c, [(c // 2, c, 2, 1), (c // 2, c, 1, 0), (c // 2, c, 1, 0)], batch_norm=True
            )
            self.preset, self.input_size = "tiny", 160
        channels = list(self.base.out_channels) + list(self.aux_convs.out_channels)
        n_boxes = [len(ar) + 1 for ar in PRESETS[self.preset]["aspect_ratios"]]
        self.pred_convs = PredictionConvolutions(channels, n_boxes, n_classes)
        self.register_buffer("priors_cxcy", self.create_prior_boxes(), persistent=False)
        if backbone_weights is not None and backbone == "vgg16":
            load_vgg16_weights(self, backbone_weights)
        elif backbone_weights is not None and backbone.startswith("resnet"):
            self.base = ResNetBase(backbone, backbone_weights)

    @property
    def n_priors(self) -> int:
        return self.priors_cxcy.size(0)

    def create_prior_boxes(self) -> Tensor:
        """The priors, Tensor[P, 4] in center-size fractional coordinates (8732 for SSD300, 2390 for tiny)."""
        return preset_prior_boxes(self.preset)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """Args: images (Tensor[B, 3, S, S]), S = ``input_size``, normalised like the training data.

        Returns: locs (Tensor[B, P, 4]) offsets against the priors in the SSD encoding (weights 10, 10, 5, 5),
        scores (Tensor[B, P, n_classes]) unnormalised class scores.

        Raises:
            ValueError: when the images are not ``[B, 3, input_size, input_size]`` (the priors are laid out
                for that size only).
        """
        s = self.input_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != s or images.shape[3] != s:
            raise ValueError(
                f"the {self.backbone} SSD takes images of shape [B, 3, {s}, {s}], got "
                f"{list(images.shape)}; resize them to {s}x{s} (detops.ssd.transforms.ssd_transforms)"
            )
        feats = self.base(images)
        feats[0] = self.l2_norm(feats[0])
        feats = feats + self.aux_convs(feats[-1])
        return self.pred_convs(feats)

    def decode(self, predicted_locs: Tensor) -> Tensor:
        """Tensor[B, P, 4] offsets -> Tensor[B, P, 4] fractional xyxy boxes (no clamp, as the tutorial)."""
        priors_xy = detops.box_convert(self.priors_cxcy, "cxcywh", "xyxy")
        return detops.decode_boxes(predicted_locs, priors_xy.to(predicted_locs.dtype), SSD_WEIGHTS, clamp=None)

    @torch.no_grad()
    def detect_batched(
        self,
        predicted_locs: Tensor,
        predicted_scores: Tensor,
        min_score: float = 0.01,
        max_overlap: float = 0.45,
        top_k: int = 200,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`detect_objects` in the fixed-shape padded form of :func:`detops.multiclass_nms`: boxes
        [B, top_k, 4], scores [B, top_k], labels [B, top_k] (-1 padding), counts [B]. No host sync."""
        probs = F.softmax(predicted_scores.float(), dim=2)
        boxes = self.decode(predicted_locs.float())
        return multiclass_nms(boxes, probs, min_score, max_overlap, top_k, background_class=0)

    @torch.no_grad()
    def detect_objects(
        self, predicted_locs: Tensor, predicted_scores: Tensor, min_score: float, max_overlap: float, top_k: int
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """The tutorial's detection: per image and non-background class, keep priors whose softmax score is
        above ``min_score``, suppress boxes overlapping a better one by more than ``max_overlap``, keep the
        ``top_k`` best over all classes.

        Args:
            predicted_locs (Tensor[B, P, 4]), predicted_scores (Tensor[B, P, C]): the outputs of forward.

        Returns:
            three lists of B tensors: boxes ([n, 4] fractional xyxy), labels ([n] int64), scores ([n]),
            sorted by decreasing score. An image with nothing detected gets the tutorial's placeholder: box
            ``[[0, 0, 1, 1]]``, label ``[0]`` (background), score ``[0]``.
        """
        boxes, scores, labels, counts = self.detect_batched(
            predicted_locs, predicted_scores, min_score, max_overlap, top_k
        )
        out_boxes, out_labels, out_scores = [], [], []
        for b, s, l, n in zip(boxes, scores, labels, counts.tolist()):
            if n == 0:
                out_boxes.append(torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=b.device))
                out_labels.append(torch.zeros(1, dtype=torch.long, device=b.device))
                out_scores.append(torch.zeros(1, device=b.device))
            else:
                out_boxes.append(b[:n])
                out_labels.append(l[:n])
                out_scores.append(s[:n])
        return out_boxes, out_labels, out_scores


def tiny_ssd(n_classes: int, width: int = 16) -> SSD300:
    """The small CPU configuration: ``SSD300(n_classes, backbone="tiny", width=width)``."""
    return SSD300(n_classes, backbone="tiny", width=width)


def load_vgg16_weights(model: SSD300, path_or_state: Union[str, Dict[str, Tensor]]) -> SSD300:
    """Loads ImageNet VGG16 weights into an SSD300's base from a torchvision ``vgg16`` state dict.

    ``features.*`` convolutions map onto conv1_1 ... conv5_3 in order. The fully connected fc6 (4096 x
    512·7·7) and fc7 (4096 x 4096) are reshaped into convolutions and decimated as the paper does: every 4th
    output (and for fc7 input) channel and, for fc6, every 3rd position of the 7x7 kernel, giving conv6 (1024
    x 512 x 3 x 3, used with dilation 6) and conv7 (1024 x 1024 x 1 x 1). Nothing is downloaded.

    Args:
        model: an ``SSD300`` with ``backbone="vgg16"``.
        path_or_state: a file saved with ``torch.save(torchvision.models.vgg16(...).state_dict(), path)``, or
            the state dict itself.
    """
    if model.backbone != "vgg16":
        raise ValueError(f"load_vgg16_weights needs a vgg16 backbone, the model has {model.backbone!r}")
    state = path_or_state
    if not isinstance(state, dict):
        state = torch.load(path_or_state, map_location="cpu", weights_only=True)
    conv_keys = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith(".weight")})
    if len(conv_keys) != len(VGGBase.CONV_NAMES):
        raise ValueError(f"expected {len(VGGBase.CONV_NAMES)} convolutions under features.*, found {len(conv_keys)}")
    base = model.base
    with torch.no_grad():
        for name, idx in zip(VGGBase.CONV_NAMES, conv_keys):
            conv = getattr(base, name)
            w, b = state[f"features.{idx}.weight"], state[f"features.{idx}.bias"]
            if w.shape != conv.weight.shape:
                raise ValueError(
                    f"features.{idx}.weight has shape {tuple(w.shape)}, {name} needs {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        fc6_w = state["classifier.0.weight"].view(4096, 512, 7, 7)
        base.conv6.weight.copy_(_decimate(fc6_w, [4, None, 3, 3]))
        base.conv6.bias.copy_(_decimate(state["classifier.0.bias"], [4]))
        fc7_w = state["classifier.3.weight"].view(4096, 4096, 1, 1)
        base.conv7.weight.copy_(_decimate(fc7_w, [4, 4, None, None]))
        base.conv7.bias.copy_(_decimate(state["classifier.3.bias"], [4]))
    return model


def _decimate(t: Tensor, steps: Sequence[Optional[int]]) -> Tensor:
    """Keeps every ``steps[d]``-th element along each dimension d (``None`` keeps all)."""
    return t[tuple(slice(None, None, s) for s in steps)]
