"""ConvertConfig: typed options, recipe loading, validation of values that need no model."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgectl.converter import ConvertConfig
from edgectl.converter.config import option_help, parse_shape

from edgectl.errors import ConfigError


def test_shapes_parse_and_bad_ones_are_named() -> None:
    assert parse_shape("1x3x224x224") == (1, 3, 224, 224)
    with pytest.raises(ConfigError, match="Bad input shape '1x0'"):
        parse_shape("1x0")
    config = ConvertConfig.from_recipe(None, source="m.pt", input_shape="1x3x8x8,1x4")
    assert config.input_shape == ((1, 3, 8, 8), (1, 4))


def test_every_option_has_help() -> None:
    assert all(len(text) > 10 for text in option_help().values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Nothing to convert"),
        ({"source": "m.pt", "precisions": ("int4",)}, "Unknown precision 'int4'"),
        ({"source": "m.pt", "precisions": ("fp32", "fp32")}, "lists a precision twice"),
        ({"source": "m.pt", "formats": ("coreml",)}, "Unknown format 'coreml'"),
        ({"source": "m.pt", "max_accuracy_drop": -1.0}, "must be >= 0"),
        ({"source": "m.pt", "weights": Path("w.pth")}, "--weights only applies"),
        ({"source": "m.pt", "batch_size": 0}, "--batch-size must be at least 1"),
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ConvertConfig(**kwargs)  # type: ignore[arg-type]


def test_recipe_paths_are_relative_to_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "sub" / "edgectl.toml"
    recipe.parent.mkdir()
    recipe.write_text('source = "model.pt"\ncalibration = "calib.npz"\nmax-accuracy-drop = 0.5\nseed = 7\n')
    config = ConvertConfig.from_recipe(recipe, seed=None, out=tmp_path / "o")
    assert config.source == str(recipe.parent / "model.pt")
    assert config.calibration == recipe.parent / "calib.npz"
    assert config.max_accuracy_drop == 0.5 and config.seed == 7
    assert config.parameters()["calibration"] == str(recipe.parent / "calib.npz")
    assert "out" not in config.parameters() and "model" not in config.parameters()


def test_recipe_values_of_the_wrong_type(tmp_path: Path) -> None:
    recipe = tmp_path / "edgectl.toml"
    recipe.write_text('[convert]\nsource = "m.pt"\nseed = "seven"\n')
    with pytest.raises(ConfigError, match="Option 'seed'"):
        ConvertConfig.from_recipe(recipe)


def test_importing_the_converter_api_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from edgectl.converter import ConvertConfig, ConvertResult, convert\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
