"""Which heads are CAM-exact, user modules by layer name, and clear refusals."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from camloc.errors import HeadError
from camloc.models.adapters import get_adapter


class UserNet(nn.Module):
    """A user's own module: conv trunk, functional pooling, linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1))
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x).mean(dim=(2, 3)))


class TupleNet(UserNet):
    def forward(self, x: torch.Tensor):
        return super().forward(x), x


@pytest.mark.parametrize(
    ("build", "expect"),
    [
        (lambda: torchvision.models.vgg11(), "3 linear layers"),
        (lambda: torchvision.models.alexnet(), "3 linear layers"),
        (lambda: torchvision.models.mobilenet_v3_small(), "2 linear layers"),
        (lambda: timm.create_model("mobilenetv3_small_050"), r"conv_head \(Conv2d\), act2 \(Hardswish\)"),
        (lambda: timm.create_model("convnext_atto", head_hidden_size=32), "not CAM-exact"),
        (lambda: timm.create_model("resnet18", num_classes=0), "no classifier"),
        (lambda: timm.create_model("resnet18", global_pool="max"), "pools with 'max'"),
    ],
)
def test_refused_heads_say_why_and_what_to_do(build, expect: str) -> None:
    with pytest.raises(HeadError, match=expect) as err:
        get_adapter(build())
    assert "--method gradcam" in str(err.value) or "no classifier" in str(err.value)


def test_user_module_found_and_named_layers() -> None:
    torch.manual_seed(0)
    net = UserNet().eval()
    auto = get_adapter(net)
    assert auto.feature_layer == "trunk" and auto.linear is net.fc
    named = get_adapter(net, feature_layer="trunk.2", linear_layer="fc")
    assert named.feature_layer == "trunk.2"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feats, logits = named.forward(x)
        assert torch.allclose(logits, net(x)) and feats.shape == (2, 6, 8, 8)
    assert not net._forward_hooks and not net.trunk[2]._forward_hooks  # nothing left behind
    with pytest.raises(HeadError, match="is not what 'fc' receives"):
        get_adapter(net, feature_layer="trunk.1", linear_layer="fc")
    with pytest.raises(Exception, match="no layer named 'nope'"):
        get_adapter(net, feature_layer="nope")


class ReluAfterTrunk(UserNet):
    """Like DenseNet: a functional ReLU between the last module and the pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.trunk(x)).mean(dim=(2, 3)))


def test_functional_relu_before_pooling_is_recognised() -> None:
    torch.manual_seed(0)
    net = ReluAfterTrunk().eval()
    adapter = get_adapter(net)
    assert adapter.feature_layer == "trunk" and adapter.post_relu
    feats, _ = adapter.forward(torch.randn(1, 3, 16, 16))
    assert float(feats.min()) >= 0.0


def test_model_returning_tuple_is_refused() -> None:
    with pytest.raises(HeadError, match="returns tuple"):
        get_adapter(TupleNet())


def test_explain_on_a_user_module_with_named_layers() -> None:
    import camloc
    from camloc.engine import check_identity
    from camloc.methods import CAM

    torch.manual_seed(0)
    net = UserNet().eval()
    x = torch.randn(2, 3, 16, 20)
    res = camloc.explain(net, x, top_k=2, method=CAM(layer="trunk.2", linear_layer="fc"), map_sizes=())
    assert res.raw.shape == (2, 2, 8, 10) and res.maps.shape == (2, 2, 16, 20)
    assert float(check_identity(res.raw, res.all_logits, res.classes, net.fc.bias)) < 1e-5


def test_cached_adapter_follows_a_replaced_head():
    """A cached adapter must not keep serving the old linear layer after the head is swapped."""
    from camloc.models.gapnet import gapnet

    model = gapnet(num_classes=10).eval()
    assert get_adapter(model).num_classes == 10
    model.reset_classifier(3)
    adapter = get_adapter(model)
    assert adapter.num_classes == 3 and adapter.linear is model.get_classifier()
