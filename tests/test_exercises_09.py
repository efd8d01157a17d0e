"""Lesson 09's checkers: right answers pass, wrong ones get a hint that does not give the answer."""

from __future__ import annotations

import torch
from torch import nn

from camkit import exercises, hooks


def test_softmax_shrink_reads_the_factor_off_the_weights() -> None:
    logit = torch.tensor([1.0, -2.0, 0.5])
    probability = logit / 90  # 90 times smaller
    assert exercises.check_softmax_shrink(logit, probability, 90)
    assert exercises.check_softmax_shrink(logit, probability, 60)  # within a factor of two
    inverse = exercises.check_softmax_shrink(logit, probability, 1 / 90)
    assert not inverse and "inverse" in inverse.message
    low = exercises.check_softmax_shrink(logit, probability, 5)
    assert not low and "more than 5" in low.message and "90" not in low.message
    high = exercises.check_softmax_shrink(logit, probability, 5000)
    assert not high and "less than 5000" in high.message
    assert not exercises.check_softmax_shrink(logit, probability, -3)
    assert not exercises.check_softmax_shrink(logit, probability, "ninety")
    waiting = exercises.check_softmax_shrink(logit, probability, ...)
    assert not waiting and waiting.message.startswith("Not answered yet")


def test_saturated_softmax_map_reads_the_option_off_the_maps() -> None:
    logit = torch.arange(49.0).reshape(7, 7) - 10
    cases = {"a": logit / 100, "b": torch.zeros(7, 7), "c": -logit * 1e-9}
    for truth, probability in cases.items():
        assert exercises.check_saturated_softmax_map(logit, probability, truth)
        assert exercises.check_saturated_softmax_map(logit, probability, f"({truth.upper()})")
        for other in set(cases) - {truth}:
            feedback = exercises.check_saturated_softmax_map(logit, probability, other)
            assert not feedback and f"({truth})" not in feedback.message
    assert not exercises.check_saturated_softmax_map(logit, cases["c"], "d")
    waiting = exercises.check_saturated_softmax_map(logit, cases["c"], ...)
    assert not waiting and waiting.message.startswith("Not answered yet")


class _Net(nn.Module):
    """A convolution, a batch norm with learnt statistics far from one picture's, dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(features.mean(dim=(2, 3))))


def test_training_mode_prediction_runs_a_copy_with_only_the_batch_norms_training() -> None:
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-3, 3)
        net.bn.running_var.uniform_(0.1, 5)
    net.eval()
    x = torch.randn(1, 3, 8, 8)
    top = int(net(x).argmax())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    copy = _Net()
    copy.load_state_dict(net.state_dict())
    for module in copy.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.train()
    kept = int(copy(x).argmax()) == top
    right = {"same_map_twice": True, "class_kept": kept}
    assert exercises.check_training_mode_prediction(net, x, "relu", top, right)
    wrong = exercises.check_training_mode_prediction(
        net, x, "relu", top, {**right, "same_map_twice": False}
    )
    assert not wrong and wrong.message.startswith("Not yet: same_map_twice")
    assert not exercises.check_training_mode_prediction(net, x, "relu", top, {"x": True})
    assert not exercises.check_training_mode_prediction(
        net, x, "relu", top, {"same_map_twice": "yes", "class_kept": False}
    )
    waiting = exercises.check_training_mode_prediction(net, x, "relu", top, ...)
    assert not waiting and waiting.message.startswith("Not answered yet")
    # The model itself is untouched: its mode, its statistics, its hooks.
    assert not net.training and hooks.hook_count(net) == 0
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
