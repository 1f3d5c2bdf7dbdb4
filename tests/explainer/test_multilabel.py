"""Multi-label explanations: sigmoid scores and every class above a probability, not only the top-k."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import camloc
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.models.zoo import ModelInfo

BIAS = [3.0, -3.0, 2.0, -1.0, 0.5]  # sigmoid: 0.953, 0.047 (+ image evidence), 0.881, 0.269, 0.622


class MultiLabelNet(nn.Module):
    """Features = the input's first channel (1x1 conv), GAP, linear: class 1's logit is -3 + 10 x mean(channel 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 1, 1, bias=False)
        self.fc = nn.Linear(1, 5)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0
            self.fc.weight.zero_()
            self.fc.weight[1, 0] = 10.0
            self.fc.bias.copy_(torch.tensor(BIAS))
        self.camloc_info = ModelInfo("multilabel", labels=list("abcde"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _inputs() -> torch.Tensor:
    x = torch.zeros(2, 3, 16, 16)
    x[1, 0, 4:12, 4:12] = 4.0  # image 1: channel-0 mean 1.0 -> class 1 logit 7
    return x


def test_every_class_above_a_probability_with_sigmoid_scores():
    model = MultiLabelNet().eval()
    res = camloc.explain(model, _inputs(), scores="sigmoid", min_score=0.6, map_sizes=())
    sig = [1 / (1 + math.exp(-b)) for b in BIAS]
    assert res.classes[0].tolist() == [0, 2, 4]  # 0.953, 0.881, 0.622 >= 0.6; 0.269 and 0.047 are not
    assert res.classes[1].tolist() == [1, 0, 2, 4]  # class 1: sigmoid(7) = 0.999 first
    torch.testing.assert_close(res.scores[0], torch.tensor([sig[0], sig[2], sig[4]]))
    assert abs(float(res.scores[1][0]) - 1 / (1 + math.exp(-7.0))) < 1e-6
    assert len(res) == 2 and res.settings["scores"] == "sigmoid" and res.settings["min_score"] == 0.6
    for i in range(2):  # each image's maps obey the CAM identity for its own classes
        raw, classes = res.raw[i][None], res.classes[i][None]
        assert float(check_identity(raw, res.all_logits[i][None], classes, model.fc.bias)) < 1e-5
        assert res.boxes[i].shape == (len(res.classes[i]), 4)
    box = res.boxes[1][0].tolist()  # class 1's evidence is the bright square
    assert box == [4, 4, 11, 11] or box == [4, 4, 12, 12]


def test_no_class_above_keeps_the_best_and_softmax_default():
    model = MultiLabelNet().eval()
    res = camloc.explain(model, _inputs(), scores="sigmoid", min_score=0.999, map_sizes=())
    assert res.classes[0].tolist() == [0] and res.classes[1].tolist() == [1]  # one each: a (2, 1) tensor
    assert isinstance(res.classes, torch.Tensor)
    soft = camloc.explain(model, _inputs(), top_k=2, map_sizes=())
    torch.testing.assert_close(soft.scores, soft.all_logits.softmax(1).gather(1, soft.classes))
    with pytest.raises(InputError, match="min_score must lie in"):
        camloc.explain(model, _inputs(), min_score=1.5)
    with pytest.raises(InputError, match="scores must be one of"):
        camloc.explain(model, _inputs(), scores="tanh")


def test_cli_multilabel_json(tmp_path, picture, monkeypatch):
    """`--scores sigmoid --min-score` through the CLI: the JSON lists every class above the probability."""
    from camloc.cli import main
    from camloc.io import save_checkpoint
    from camloc.models.registry import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES, "multilabel_test", MultiLabelNet)
    save_checkpoint(tmp_path / "ml", MultiLabelNet().state_dict(), {"architecture": "multilabel_test"})
    out = tmp_path / "out"
    args = ["explain", picture, "--model", str(tmp_path / "ml"), "--scores", "sigmoid", "--min-score", "0.6"]
    assert main([*args, "--format", "json", "--no-images", "--out", str(out), "--quiet"]) == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    classes = [p["class_index"] for p in record["predictions"]]
    assert [c for c in classes if c != 1] == [0, 2, 4]  # class 1 depends on the picture; the others do not
    assert all(p["score"] >= 0.6 for p in record["predictions"]) and record["settings"]["scores"] == "sigmoid"
