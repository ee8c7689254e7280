"""Local backbone weights: a file of another model is refused naming the setting's file."""

from __future__ import annotations

import pytest
import torch
import torchvision

from encoders.vision import load_weights


def test_weights_of_another_model_are_refused_naming_the_file(tmp_path) -> None:
    """A state dict with other keys, or ResNet-50's for a ResNet-18, ended in a raw
    load_state_dict RuntimeError that named neither the `weights` setting nor its file."""
    model = torchvision.models.resnet18()
    other = tmp_path / "other.pt"
    torch.save({"a": torch.zeros(1)}, other)
    with pytest.raises(
        ValueError,
        match=r"other\.pt': not a ResNet state dict: 102 of its keys missing \['conv1\.weight'",
    ):
        load_weights(model, str(other))
    bigger = tmp_path / "resnet50.pt"
    torch.save(torchvision.models.resnet50().state_dict(), bigger)
    with pytest.raises(
        ValueError, match=r"resnet50\.pt': not a ResNet state dict \(size mismatch for "
    ):
        load_weights(model, str(bigger))
    own = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), own)
    load_weights(model, str(own))
    assert torch.equal(model.conv1.weight, torch.load(own)["conv1.weight"])
