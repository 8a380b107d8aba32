"""Device profiles: defaults per target, explicit overrides, the documented table."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgectl.converter.profiles import (
    PROFILES,
    CalibrationMethod,
    Precision,
    QuantScheme,
    apply_overrides,
    get_profile,
    profile_table_markdown,
)

from edgectl.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tuning.md"


def test_every_documented_target_exists() -> None:
    assert set(PROFILES) == {"rpi4", "rpi5", "jetson-orin", "x86-avx512", "generic-arm64"}


def test_no_profile_defaults_to_dynamic_int8() -> None:
    # Dynamic int8 of conv nets measured 5-17x slower than fp32 on onnxruntime's CPU provider.
    assert all(p.quant_scheme is QuantScheme.STATIC for p in PROFILES.values())


def test_profiles_differ_where_devices_differ() -> None:
    assert get_profile("jetson-orin").precision is Precision.FP16
    assert get_profile("rpi5").precision is Precision.INT8
    assert "tflite" in get_profile("rpi4").artifacts
    assert get_profile("x86-avx512").artifacts == ("onnx",)


def test_unknown_target_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="rpi5"):
        get_profile("rpi3")


def test_overrides_win_and_are_recorded() -> None:
    base = get_profile("rpi4")
    custom = apply_overrides(base, precision="FP32", threads=2, calibration=None, artifacts="onnx")
    assert custom.precision is Precision.FP32
    assert custom.threads == 2
    assert custom.calibration is CalibrationMethod.MINMAX  # None = not given, keep the default
    assert custom.artifacts == ("onnx",)
    assert custom.overridden == ("artifacts", "precision", "threads")
    record = custom.to_manifest()
    assert record["name"] == "rpi4"
    assert record["precision"] == "fp32"
    assert record["overridden"] == ["artifacts", "precision", "threads"]
    assert apply_overrides(base) is base


@pytest.mark.parametrize(
    "overrides",
    [{"precision": "int4"}, {"threads": 0}, {"artifacts": "onnx,coreml"}, {"activation_type": "int16"},
     {"per_channel": "yes"}, {"colour": "red"}],
)  # fmt: skip
def test_bad_overrides_are_config_errors(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        apply_overrides(get_profile("rpi5"), **overrides)


def test_docs_hold_the_current_profile_table() -> None:
    # docs/tuning.md (and the README, copied from it) must show what the code does.
    assert profile_table_markdown() in DOCS.read_text(encoding="utf-8")
