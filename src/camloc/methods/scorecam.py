"""Score-CAM (Wang et al., CVPR-W 2020, arXiv:1910.01279): channel weights from forward passes, no gradients.

    M_k = minmax(Up(A_k))                         (each channel upsampled to the input size, scaled to [0, 1])
    s_ck = y_c(X * M_k)                           (class logit of the input masked by channel k)
    w_ck = softmax_k(s_ck),                       ScoreCAM_c = ReLU(sum_k w_ck A_k)

As pytorch-grad-cam and torchcam: raw logits, softmax over channels (torchcam subtracts the unmasked logit first,
which the softmax cancels). Up is bilinear with align_corners=False, camloc's convention everywhere
(pytorch-grad-cam uses align_corners=True; torchcam min-max scales before upsampling): the three agree exactly
when the layer has the input's resolution (docs/methods.md). A constant channel gives an all-zero mask.

One masked pass serves every class: the k chosen classes of an image read their scores from the same logits, so
the cost is at most B * C forward passes (in chunks of `batch_size`) whatever k is. A channel that is constant over
the map (common after a ReLU / ReLU6, e.g. at EfficientNet-Lite0's last layer) has an all-zero mask, so its masked
input is the zero image for every such channel of every image: its score is read from one forward pass of zeros
instead of one pass per channel (the same numbers, up to the float round-off of batching).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camloc.engine import EPS, min_max, normalize, upsample
from camloc.methods.base import MapMethod, input_layout, register_method, select_classes
from camloc.methods.layers import forward_recorded, resolve_layer
from camloc.models.adapters import as_logits, eval_mode


@register_method("scorecam", "score-cam")
class ScoreCAM(MapMethod):
    """Score-CAM maps; `batch_size` masked images per forward pass; relu=False keeps the signed map."""

    name = "scorecam"

    def __init__(self, layer: str | None = None, *, batch_size: int = 64, relu: bool = True) -> None:
        super().__init__(layer=layer)
        self.batch_size = max(int(batch_size), 1)
        self.relu = relu

    def run(
        self, model: nn.Module, x: Tensor, classes: Tensor | None = None, top_k: int = 5
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C_in, H, W) -> (logits (B, K), classes (B, k), maps (B, k, h, w) at the layer's resolution)."""
        target = resolve_layer(model, self.layer)
        x = input_layout(x, self.channels_last)
        with torch.no_grad(), eval_mode(model):
            acts, logits = forward_recorded(model, x, target)
            chosen = select_classes(logits, classes, top_k)
            weights = self.channel_scores(model, x, acts, chosen).softmax(dim=1)  # (B, C, k)
            maps = torch.einsum("bchw,bck->bkhw", acts, weights.to(acts.dtype))
        return logits, chosen, maps.clamp(min=0) if self.relu else maps

    def channel_scores(self, model: nn.Module, x: Tensor, acts: Tensor, chosen: Tensor) -> Tensor:
        """s (B, C, k): logits of the chosen classes for the input masked by each normalised channel."""
        b, c = acts.shape[:2]
        size = tuple(x.shape[-2:])
        lo, hi = min_max(acts.float())
        flat = (hi - lo).flatten() <= EPS  # (B*C,) constant channels: normalize() makes their masks all zero
        img_all = torch.arange(b * c, device=x.device) // c
        scores = torch.empty(b * c, chosen.shape[1], dtype=torch.float32, device=x.device)
        if flat.any():  # X * 0 is the zero image whatever X is: one pass serves every constant channel
            zero = as_logits(model(torch.zeros_like(x[:1])))[0]
            scores[flat] = zero[chosen[img_all[flat]]].float()
        todo = torch.nonzero(~flat).flatten()
        for start in range(0, len(todo), self.batch_size):  # masks made per chunk: all at once would be B*C*H*W
            idx = todo[start : start + self.batch_size]
            img, ch = idx // c, idx % c
            masks = normalize(upsample(acts[img, ch][:, None].float(), (size[0], size[1]))).to(x.dtype)  # (n, 1, H, W)
            out = as_logits(model(input_layout(x[img] * masks, self.channels_last)))
            scores[idx] = out.gather(1, chosen[img]).float()
        return scores.view(b, c, -1)
