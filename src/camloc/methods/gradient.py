"""Gradient-weighted class activation maps: Grad-CAM, Grad-CAM++, XGrad-CAM and LayerCAM.

All four combine the activations A (B, C, h, w) of one layer with the gradients G = dy_c / dA of the chosen class
scores y_c (logits, before softmax). They differ only in `combine`. The gradients of the k chosen classes of a
whole batch come from one forward pass and one batched backward pass (`torch.autograd.grad(...,
is_grads_batched=True)` over the k one-hot rows of the (B, k) score matrix; images of a batch are independent in
eval mode, so summing over the batch gives every image its own gradient).

Closed form. When the layer is the map that global average pooling and one linear layer classify (the CAM-exact
feature layer of `camloc.models.adapters`, without a norm of the pooled vector), y_c = sum_k w_ck mean_xy A_k(x, y) + b_c, so

    dy_c / dA_k(x, y) = w_ck / (h w)                                                  (no backward pass needed)

and Grad-CAM becomes CAM: alpha_ck = w_ck / (h w), GradCAM_c = ReLU(sum_k alpha_ck A_k) = ReLU(CAM_c) / (h w).

Safety. Gradients are enabled locally (callers under `torch.no_grad()` or `torch.inference_mode()` work); the
activation is recorded with a forward hook removed in `finally` and differentiated with `torch.autograd.grad` on
the stored output (no backward hooks: in-place ReLU as in DenseNet is fine); the input is given `requires_grad`
on a detached copy, so no parameter flag is touched; every module's train/eval flag is restored.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor, nn

from camloc.errors import InputError
from camloc.methods.base import MapMethod, input_layout, register_method, select_classes
from camloc.methods.layers import TargetLayer, forward_recorded, forward_recorded_raw, resolve_layer
from camloc.models.adapters import eval_mode


class GradientMethod(MapMethod):
    """Base of the gradient-weighted family: `run` records A and G, subclasses `combine` them.

    layer: `named_modules()` name of the layer to explain (default: the last spatial map, see `methods.layers`).
    relu: apply the papers' final ReLU to the map (False keeps the signed map, e.g. to see all-negative evidence).
    differentiable: keep the autograd graph (`create_graph=True`): maps and logits can then be used in a loss and
        differentiated with respect to the model's parameters (and the input, if it requires grad).
    closed_form: use dy_c/dA = w_c / (h w) at the CAM-exact feature layer instead of a backward pass (same values
        to float round-off; False forces autograd, e.g. to benchmark it).
    """

    name = "gradient"

    def __init__(
        self, layer: str | None = None, *, relu: bool = True, differentiable: bool = False, closed_form: bool = True
    ) -> None:
        super().__init__(layer=layer)
        self.relu = relu
        self.differentiable = differentiable
        self.closed_form = closed_form

    @abstractmethod
    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Maps (B, k, h, w) from activations A (B, C, h, w) and gradients G (B, k, C, h, w), before the ReLU."""

    def run(
        self, model: nn.Module, x: Tensor, classes: Tensor | None = None, top_k: int = 5
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C_in, H, W) -> (logits (B, K), classes (B, k), maps (B, k, h, w) at the layer's resolution)."""
        target = resolve_layer(model, self.layer)
        logits, chosen, acts, grads = activations_and_gradients(
            model,
            input_layout(x, self.channels_last),
            target,
            classes,
            top_k,
            closed_form=self.closed_form,
            create_graph=self.differentiable,
        )
        with torch.inference_mode(False), torch.set_grad_enabled(self.differentiable):
            maps = self.combine(acts, grads)
            return logits, chosen, maps.clamp(min=0) if self.relu else maps


def activations_and_gradients(
    model: nn.Module,
    x: Tensor,
    target: TargetLayer,
    classes: Tensor | None,
    top_k: int,
    *,
    closed_form: bool = True,
    create_graph: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(logits (B, K), classes (B, k), A (B, C, h, w), G (B, k, C, h, w)).

    G[b, j] = d logits[b, classes[b, j]] / dA[b]. Without `create_graph` every returned tensor is detached.
    """
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        if x.is_inference():
            x = x.clone()  # tensors made under inference_mode cannot enter autograd; a normal copy can
        if closed_form and target.adapter is not None and target.adapter.norm is None:
            with torch.set_grad_enabled(create_graph):
                acts, logits = forward_recorded(model, x, target)
                chosen = select_classes(logits.detach(), classes, top_k)
                h, w = acts.shape[-2:]
                weight = target.adapter.weight.to(acts.dtype)[chosen] / (h * w)  # (B, k, C)
                grads = weight[..., None, None].expand(*weight.shape, h, w)
        else:
            x_in = x if x.requires_grad else x.detach().requires_grad_(True)
            raw, logits, layout = forward_recorded_raw(model, x_in, target)
            chosen = select_classes(logits.detach(), classes, top_k)
            grads = layout.apply(_batched_gradients(logits.gather(1, chosen), raw, target.name, create_graph))
            acts = layout.apply(raw)  # tokens / channels-last: (B, C, h, w), prefix tokens dropped
    if not create_graph:
        logits, acts, grads = logits.detach(), acts.detach(), grads.detach()
    return logits, chosen, acts, grads


def _batched_gradients(scores: Tensor, acts: Tensor, name: str, create_graph: bool) -> Tensor:
    """G (B, k, C, h, w): the gradient of each column of scores (B, k) with respect to acts, in one backward pass."""
    if not acts.requires_grad:
        raise InputError(f"layer '{name}' does not depend on the input: no gradient to explain with")
    k = scores.shape[1]
    basis = torch.eye(k, dtype=scores.dtype, device=scores.device)[:, None, :].expand(k, *scores.shape)
    grads: Tensor | None
    try:
        grads = torch.autograd.grad(
            scores,
            acts,
            grad_outputs=basis,
            is_grads_batched=True,
            allow_unused=True,
            retain_graph=True,
            create_graph=create_graph,
        )[0]
    except RuntimeError:  # an op of the model's head without a vmap rule: one backward pass per class column
        grads = None if k == 1 else _column_gradients(scores, acts, create_graph)
        if grads is None:
            raise
    if grads is None:
        raise InputError(f"the logits do not depend on layer '{name}' (is it called after the classifier?)")
    return grads.transpose(0, 1)


def _column_gradients(scores: Tensor, acts: Tensor, create_graph: bool) -> Tensor | None:
    """The same gradients as k separate backward passes (k, B, C, h, w); the fallback of `_batched_gradients`."""
    cols = [
        torch.autograd.grad(scores[:, j].sum(), acts, allow_unused=True, retain_graph=True, create_graph=create_graph)[
            0
        ]
        for j in range(scores.shape[1])
    ]
    return None if cols[0] is None else torch.stack(cols)


def _safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """num / den where den != 0, else 0 (and a gradient that stays finite)."""
    nonzero = den != 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)), torch.zeros_like(num))


@register_method("gradcam", "grad-cam")
class GradCAM(GradientMethod):
    """Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391).

        alpha_ck = 1/(h w) sum_xy dy_c / dA_k(x, y),      GradCAM_c = ReLU(sum_k alpha_ck A_k)

    Identity with CAM (Zhou et al. 2016) on a GAP + linear net at its last feature layer: alpha_ck = w_ck / (h w),
    so GradCAM_c = ReLU(CAM_c) / (h w) exactly (and CAM_c / (h w) with relu=False). Computed there in closed form.
    """

    name = "gradcam"

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """A (B, C, h, w), G (B, k, C, h, w) -> sum_k alpha_ck A_k (B, k, h, w), alpha = G's spatial mean."""
        alpha = gradients.mean(dim=(-2, -1))  # (B, k, C)
        return torch.einsum("bchw,bkc->bkhw", activations, alpha)


@register_method("gradcam++", "gradcampp", "grad-cam++")
class GradCAMPlusPlus(GradientMethod):
    """Grad-CAM++ (Chattopadhyay et al., WACV 2018, arXiv:1710.11063, eq. 19), with g = dy_c / dA_k(x, y):

        a_ck(x, y) = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)     (0 where g = 0 or the denominator is 0)
        w_ck = sum_xy a_ck(x, y) ReLU(g),                       GradCAM++_c = ReLU(sum_k w_ck A_k)

    As the paper and pytorch-grad-cam: the spatial sum is over A only. torchcam sums A * g^3 over space instead;
    both agree where g is constant over space (the CAM-exact layer) and differ elsewhere (docs/methods.md).
    No eps is added to the denominator (pytorch-grad-cam adds 1e-6): a zero denominator gives a zero weight.
    """

    name = "gradcam++"

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """A (B, C, h, w), G (B, k, C, h, w) -> sum_k w_ck A_k (B, k, h, w) with eq. 19's weights."""
        g2 = gradients.pow(2)
        sum_a = activations.sum(dim=(-2, -1))[:, None, :, None, None]  # (B, 1, C, 1, 1)
        alpha = _safe_divide(g2, 2 * g2 + sum_a * g2 * gradients)
        weights = (alpha * gradients.clamp(min=0)).sum(dim=(-2, -1))  # (B, k, C)
        return torch.einsum("bchw,bkc->bkhw", activations, weights)


@register_method("xgradcam", "xgrad-cam")
class XGradCAM(GradientMethod):
    """XGrad-CAM (Fu et al., BMVC 2020, arXiv:2008.02312):

        w_ck = sum_xy (A_k(x, y) / sum_ab A_k(a, b)) dy_c / dA_k(x, y),      XGradCAM_c = ReLU(sum_k w_ck A_k)

    A channel whose activations sum to 0 gets weight 0 (the peers add eps 1e-7 / 1e-8 to the denominator).
    """

    name = "xgradcam"

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """A (B, C, h, w), G (B, k, C, h, w) -> sum_k w_ck A_k (B, k, h, w), w = G weighted by A's share."""
        num = torch.einsum("bkchw,bchw->bkc", gradients, activations)
        weights = _safe_divide(num, activations.sum(dim=(-2, -1))[:, None, :])
        return torch.einsum("bchw,bkc->bkhw", activations, weights)


@register_method("layercam", "layer-cam")
class LayerCAM(GradientMethod):
    """LayerCAM (Jiang et al., IEEE TIP 2021, doi:10.1109/TIP.2021.3089943): a weight per position, not per channel,

    LayerCAM_c(x, y) = ReLU(sum_k ReLU(dy_c / dA_k(x, y)) A_k(x, y))
    """

    name = "layercam"

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """A (B, C, h, w), G (B, k, C, h, w) -> sum_k ReLU(G_k) A_k (B, k, h, w), weighted per position."""
        return torch.einsum("bkchw,bchw->bkhw", gradients.clamp(min=0), activations)
