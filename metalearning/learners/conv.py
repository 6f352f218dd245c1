"""Few-shot image classifiers with stateless batch norm (maml.md §5.2, meta-sgd.md §4.2).

Every batch-norm layer here normalises with the statistics of the batch it is given and keeps
no running statistics (no buffers), so a forward pass is a pure function of the parameters and
the inputs: nothing mutates under ``torch.func.vmap`` / ``torch.func.grad``, and train/eval mode
make no difference. MAML's reference implementation does the same: its batch norm has no moving
averages, so meta-test batches are normalised with their own statistics too (transductive
evaluation, reptile.md §6). Which batch a query example is normalised with is decided by the
loss, not the model; see :mod:`metalearning.learners.classification`.
"""

from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import Tensor, nn

_POOLINGS = ("max", "stride")


LOW_PRECISION = (torch.bfloat16, torch.float16)


class BatchNormNoStats(nn.Module):
    """Batch norm that always uses the current batch's mean and (biased) variance.

    ``y = (x − mean) / sqrt(var + eps) · weight + bias`` per feature/channel, the statistics
    taken over every dimension but 1 (Ioffe & Szegedy 2015, training-mode formula). No running
    statistics and no buffers, so the forward is pure.

    Args:
        num_features: C, the size of dimension 1 of the input.
        eps: added to the variance, as ``nn.BatchNorm``.

    Shapes:
        ``[B, C]`` or ``[B, C, H, W]`` in, same shape out.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        # The variance is the mean square of the centred input, and the per-channel factors are
        # combined before they meet the activations: two elementwise passes over ``x`` fewer than
        # ``(x − mean) · rsqrt(var + eps) · weight + bias`` with ``Tensor.var`` (whose strided
        # reduction over dims 0, 2, 3 was the slowest op of a conv4 forward). Under vmap and
        # through MAML's double backward this halves the batch norm's share of a meta-iteration
        # (`metalearning bench`).
        if x.dtype in LOW_PRECISION:  # mixed precision (bf16 autocast): normalise in float32, as F.batch_norm does
            x = x.float()
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - x.mean(dim=dims, keepdim=True)
        var = (centred * centred).mean(dim=dims, keepdim=True)
        return centred * (torch.rsqrt(var + self.eps) * self.weight.view(shape)) + self.bias.view(shape)


def _block(in_channels: int, filters: int, pooling: str) -> nn.Sequential:
    """3×3 conv (padding 1; stride 2 when ``pooling="stride"``), batch norm, ReLU, [2×2 max-pool]."""
    stride = 2 if pooling == "stride" else 1
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, filters, kernel_size=3, stride=stride, padding=1),
        BatchNormNoStats(filters),
        nn.ReLU(),
    ]
    if pooling == "max":
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def conv4_spatial_size(image_size: int, pooling: str) -> int:
    """Side of the feature map after the four blocks: 28 → 1 (max) or 2 (stride); 84 → 5 (max)."""
    size = image_size
    for _ in range(4):
        # conv k=3, p=1: same size at stride 1, ceil(n/2) at stride 2; max-pool 2: floor(n/2).
        size = (size - 1) // 2 + 1 if pooling == "stride" else size // 2
    return size


@gin.configurable
class Conv4(nn.Module):
    """The four-block CNN of MAML / Meta-SGD / Reptile (Vinyals et al. 2016's embedding).

    ``pooling="max"``: conv → BN → ReLU → 2×2 max-pool, four times (maml.md §5.2; MiniImagenet
    with 32 filters). ``pooling="stride"``: stride-2 convolutions and no pooling (MAML's
    Omniglot variant). ``hidden_fc=32`` adds Linear(32)+ReLU before the output layer (Meta-SGD's
    Omniglot variant, meta-sgd.md §4.2). ``reduce="flatten"`` flattens the last feature map (the
    output layer's fan-in is ``filters · conv4_spatial_size(image_size, pooling)²``; MiniImagenet);
    ``reduce="mean"`` averages it over space first (fan-in ``filters``), as MAML's released code
    does for Omniglot, where the paper speaks of a 64-unit last hidden layer.

    Args:
        in_channels: 1 (Omniglot) or 3 (MiniImagenet).
        filters: channels of every conv (64 Omniglot, 32 MiniImagenet).
        ways: N, the number of logits.
        image_size: side of the square inputs (28 Omniglot, 84 MiniImagenet).
        pooling: ``"max"`` or ``"stride"``.
        hidden_fc: width of the extra fully connected layer, or ``None``.
        reduce: ``"flatten"`` or ``"mean"`` (spatial average) before the head.

    Shapes:
        ``[B, in_channels, image_size, image_size]`` → logits ``[B, ways]``.
    """

    def __init__(self, *, in_channels: int, filters: int, ways: int, image_size: int,
                 pooling: str = "max", hidden_fc: int | None = None, reduce: str = "flatten"):
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"Conv4.pooling must be one of {_POOLINGS}, got {pooling!r}")
        if reduce not in ("flatten", "mean"):
            raise ValueError(f"Conv4.reduce must be 'flatten' or 'mean', got {reduce!r}")
        side = conv4_spatial_size(image_size, pooling)
        if side < 1:
            raise ValueError(f"Conv4 with pooling={pooling!r} needs image_size >= 16, got {image_size}")
        channels = [in_channels] + [filters] * 4
        self.features = nn.Sequential(*(_block(c_in, c_out, pooling)
                                        for c_in, c_out in zip(channels[:-1], channels[1:])))
        if reduce == "mean":
            head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            fan_in = filters
        else:
            head, fan_in = [nn.Flatten()], filters * side * side
        if hidden_fc is not None:
            head += [nn.Linear(fan_in, hidden_fc), nn.ReLU()]
            fan_in = hidden_fc
        head.append(nn.Linear(fan_in, ways))
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@gin.configurable
class MLPClassifier(nn.Sequential):
    """MAML's non-convolutional baseline (maml.md §5.2): hidden Linear → BN → ReLU, then Linear.

    Image inputs are flattened first, so Omniglot batches ``[B, 1, 28, 28]`` can be fed as is
    with ``in_features=784``.

    Args:
        in_features: input width after flattening.
        ways: N, the number of logits.
        hidden: hidden widths; the paper uses 256, 128, 64, 64.

    Shapes:
        ``[B, *]`` with ``prod(*) == in_features`` → logits ``[B, ways]``.
    """

    def __init__(self, *, in_features: int, ways: int, hidden: Sequence[int] = (256, 128, 64, 64)):
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip([in_features, *hidden[:-1]], hidden):
            layers += [nn.Linear(fan_in, fan_out), BatchNormNoStats(fan_out), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1] if hidden else in_features, ways))
        super().__init__(*layers)
