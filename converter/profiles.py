"""Device profiles: ``--target rpi4 | rpi5 | jetson-orin | x86-avx512 | generic-arm64``.

A profile is a set of conversion defaults for one class of device: precision, quantization scheme, operator set,
threads and which artifacts to emit. Every field can be overridden by an explicit flag; :func:`apply_overrides`
does the merge and records which fields the user set, so the manifest can say what came from where.

The defaults follow measurements, not hopes:

* Dynamic int8 quantization of convolution networks runs 5–17× *slower* than fp32 on onnxruntime's CPU provider
  (the activations are re-quantized at run time, and ConvInteger has no fast kernel), so no profile defaults to it.
* Static QDQ int8 with per-channel weights is fast on ARMv8.2+ (dot-product instructions, Raspberry Pi 5) and on
  x86 with AVX-512 VNNI; on a Raspberry Pi 4 (Cortex-A72, no dot product) it still helps, less.
* Jetson Orin runs fp16 on the GPU through TensorRT; int8 there needs TensorRT's own calibration cache.

:data:`PROFILES` is the one source of the documented table (:func:`profile_table_markdown` renders it for
docs/tuning.md and the README).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edgectl.errors import ConfigError


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class QuantScheme(StrEnum):
    """How int8 is produced. ``STATIC`` calibrates activation ranges ahead of time (QDQ); ``DYNAMIC`` computes them
    at run time (cheap to produce, slow for convolutions)."""

    STATIC = "static"
    DYNAMIC = "dynamic"


class CalibrationMethod(StrEnum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"
    DISTRIBUTION = "distribution"


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    """Conversion defaults for one class of device.

    ``threads`` is the intra-op thread count the validation latency is measured with (the device's core budget for
    inference). ``int8_must_be_faster``: when precision was not chosen explicitly and the int8 model measures slower
    than fp32 on this machine, ship fp32 instead (only meaningful where this machine predicts the target, i.e. x86).
    """

    name: str
    description: str
    precision: Precision
    quant_scheme: QuantScheme = QuantScheme.STATIC
    per_channel: bool = True
    calibration: CalibrationMethod = CalibrationMethod.MINMAX
    activation_type: str = "uint8"  # "uint8" | "int8"
    weight_type: str = "int8"
    opset: int = 18
    threads: int = 4
    execution_provider: str = "cpu"  # what the runtime will use there: cpu | xnnpack | tensorrt
    artifacts: tuple[str, ...] = ("onnx",)
    int8_must_be_faster: bool = False
    #: Channel pruning keeps multiples of this many channels: the width the device's fast kernels work on.
    channel_block: int = 8
    #: Which fields the user set explicitly (filled by :func:`apply_overrides`).
    overridden: tuple[str, ...] = field(default=())

    def to_manifest(self) -> dict[str, Any]:
        """The ``manifest.target`` record: the profile name and every effective default."""
        data = dataclasses.asdict(self)
        data["artifacts"] = list(self.artifacts)
        data["overridden"] = list(self.overridden)
        for key in ("precision", "quant_scheme", "calibration"):
            data[key] = str(data[key])
        return data


PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            name="rpi4",
            description="Raspberry Pi 4 (Cortex-A72, 4 cores, ARMv8.0: NEON, no int8 dot product)",
            precision=Precision.INT8,
            activation_type="uint8",
            threads=4,
            execution_provider="xnnpack",
            artifacts=("onnx", "tflite"),
        ),
        DeviceProfile(
            name="rpi5",
            description="Raspberry Pi 5 (Cortex-A76, 4 cores, ARMv8.2 with int8 dot product)",
            precision=Precision.INT8,
            activation_type="int8",
            threads=4,
            execution_provider="xnnpack",
            artifacts=("onnx", "tflite"),
        ),
        DeviceProfile(
            name="jetson-orin",
            description="NVIDIA Jetson Orin (Ampere GPU; TensorRT / CUDA through onnxruntime-gpu)",
            precision=Precision.FP16,
            per_channel=False,
            threads=2,
            execution_provider="tensorrt",
            artifacts=("onnx",),
        ),
        DeviceProfile(
            name="x86-avx512",
            description="x86-64 server / NUC with AVX-512 VNNI",
            precision=Precision.INT8,
            activation_type="uint8",
            threads=4,
            execution_provider="cpu",
            artifacts=("onnx",),
            int8_must_be_faster=True,
            # onnxruntime's NCHWc convolutions use 16-channel blocks with AVX-512 (8 with AVX2 / NEON).
            channel_block=16,
        ),
        DeviceProfile(
            name="generic-arm64",
            description="Any other aarch64 Linux board (conservative: fp32, runs everywhere)",
            precision=Precision.FP32,
            threads=4,
            execution_provider="cpu",
            artifacts=("onnx", "tflite"),
        ),
    )
}

DEFAULT_TARGET = "generic-arm64"

_CHOICES: dict[str, type[StrEnum]] = {
    "precision": Precision,
    "quant_scheme": QuantScheme,
    "calibration": CalibrationMethod,
}
_ARTIFACT_FORMATS = ("onnx", "tflite")
_TENSOR_TYPES = ("uint8", "int8")


def get_profile(name: str) -> DeviceProfile:
    """Look a profile up by name.

    Raises:
        ConfigError: ``name`` is not a known profile (the message lists them).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"Unknown target '{name}'.", hint=f"Choose one of: {', '.join(PROFILES)} (see docs/tuning.md)."
        ) from None


def apply_overrides(profile: DeviceProfile, **overrides: Any) -> DeviceProfile:
    """Return ``profile`` with explicit flag values applied; ``None`` means "not given, keep the default".

    Raises:
        ConfigError: an unknown field, or a value outside the field's choices.
    """
    known = {f.name for f in dataclasses.fields(DeviceProfile)} - {"name", "description", "overridden"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"Unknown profile setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        changes[key] = _coerce(key, value)
    if not changes:
        return profile
    overridden = tuple(sorted(set(profile.overridden) | set(changes)))
    return dataclasses.replace(profile, **changes, overridden=overridden)


def _coerce(key: str, value: Any) -> Any:
    if key in _CHOICES:
        enum = _CHOICES[key]
        try:
            return enum(str(value).lower())
        except ValueError:
            choices = ", ".join(m.value for m in enum)
            raise ConfigError(f"Invalid {key.replace('_', '-')} '{value}'; choose one of: {choices}.") from None
    if key == "artifacts":
        items = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
        bad = [a for a in items if a not in _ARTIFACT_FORMATS]
        if bad or not items:
            raise ConfigError(
                f"Invalid artifact format(s) {bad or items}; choose from: {', '.join(_ARTIFACT_FORMATS)}."
            )
        return items
    if key in ("activation_type", "weight_type"):
        if value not in _TENSOR_TYPES:
            raise ConfigError(f"Invalid {key.replace('_', '-')} '{value}'; choose one of: {', '.join(_TENSOR_TYPES)}.")
        return value
    if key in ("opset", "threads"):
        if not isinstance(value, int) or isinstance(value, bool) or value < (7 if key == "opset" else 1):
            raise ConfigError(f"Invalid {key} {value!r}; it must be an integer ≥ {7 if key == 'opset' else 1}.")
        return value
    if key in ("per_channel", "int8_must_be_faster"):
        if not isinstance(value, bool):
            raise ConfigError(f"Invalid {key.replace('_', '-')} {value!r}; it must be true or false.")
        return value
    return value


#: ConvertConfig field -> how to read it from a profile.
_CONFIG_FIELDS: dict[str, str] = {
    "precisions": "precision",
    "formats": "artifacts",
    "calibrate_method": "calibration",
    "per_channel": "per_channel",
    "activation_type": "activation_type",
    "weight_type": "weight_type",
    "opset": "opset",
    "latency_threads": "threads",
}


def config_defaults(profile: DeviceProfile, *, source: str | None = None) -> dict[str, Any]:
    """The profile as ConvertConfig values (what ``--target`` fills in when no flag or recipe key sets it).

    ``source``: an ONNX input cannot be exported to TFLite, so its artifacts are ONNX only.
    """
    precision = {Precision.INT8: "int8", Precision.FP16: "fp16", Precision.FP32: "fp32"}[profile.precision]
    if profile.quant_scheme is QuantScheme.DYNAMIC and profile.precision is Precision.INT8:
        precision = "int8-dynamic"
    formats = tuple(profile.artifacts)
    if source is not None and str(source).lower().endswith(".onnx"):
        formats = ("onnx",)
    return {
        "precisions": (precision,),
        "formats": formats,
        "calibrate_method": str(profile.calibration),
        "per_channel": profile.per_channel,
        "activation_type": profile.activation_type,
        "weight_type": profile.weight_type,
        "opset": profile.opset,
        "latency_threads": profile.threads,
    }


def target_record(config: Any) -> dict[str, Any]:
    """``manifest.target`` for a conversion: the profile name, its description, the values the conversion really
    used for each profile setting, and which of them differ from the profile (explicit overrides).
    An empty dict when no ``--target`` was given."""
    name = getattr(config, "target", None)
    if not name:
        return {}
    profile = get_profile(name)
    defaults = config_defaults(profile, source=getattr(config, "source", None))
    used = {key: getattr(config, key) for key in _CONFIG_FIELDS}
    overridden = sorted(key for key, value in used.items() if value != defaults[key])
    return {
        "profile": profile.name,
        "description": profile.description,
        "execution_provider": profile.execution_provider,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in used.items()},
        "overridden": overridden,
    }


def profile_table_markdown() -> str:
    """The device-profile table of docs/tuning.md (and the README), rendered from :data:`PROFILES`."""
    header = (
        "| target | device | precision | int8 scheme | weights | calibration | opset | threads | runtime | artifacts "
        "| prune block |"
    )
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    rows = [header, rule]
    for p in PROFILES.values():
        scheme = f"{p.quant_scheme} QDQ, act {p.activation_type}" if p.precision is Precision.INT8 else "—"
        weights = ("per-channel" if p.per_channel else "per-tensor") if p.precision is Precision.INT8 else "—"
        calibration = str(p.calibration) if p.precision is Precision.INT8 else "—"
        rows.append(
            f"| `{p.name}` | {p.description} | {p.precision} | {scheme} | {weights} | {calibration} | {p.opset} "
            f"| {p.threads} | {p.execution_provider} | {', '.join(p.artifacts)} | {p.channel_block} |"
        )
    return "\n".join(rows) + "\n"
