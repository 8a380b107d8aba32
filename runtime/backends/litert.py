"""LiteRT backends: ``ai-edge-litert`` (the default for ``.tflite``) and legacy ``tflite-runtime`` as a fallback.

Both use the same interpreter API; :class:`LiteRTSession` wraps either one.

- Threads and XNNPACK come from :class:`SessionOptions` (``xnnpack=False`` selects the op resolver without
  default delegates).
- Names: a model exported by edgectl carries the manifest's input/output names as its SignatureDef names. When
  the model sits in a bundle whose manifest names differ (a file made by another tool), the names are mapped by
  signature order and :class:`~edgectl.errors.SignatureError` is raised at load if counts or shapes disagree.
- Quantized I/O: an int8/uint8 input or output with a scale is presented as float32 in :attr:`signature`; float
  inputs are quantized with the tensor's scale / zero point and outputs dequantized. Arrays already of the
  tensor's integer type pass through unchanged.
- Batching (:class:`BatchMode`): a model with a dynamic first dimension takes any batch (``native``); a model
  exported with batch 1 is probed at load: if resizing its inputs to batch 2 works *and* gives the same answers as
  two single rows it runs batches by resizing (``resize``), otherwise row by row (``row-by-row``). Both report a
  batch dimension of -1. Models without a leading batch dimension of 1 take exactly their shapes (``fixed``).
- Thread safety: an interpreter is not thread-safe, so :meth:`LiteRTSession.run` holds a per-session lock; calls
  from several threads are serialised (correct, not parallel).
"""

from __future__ import annotations

import importlib
import threading
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgectl.bundle import MANIFEST, Manifest, TensorSpec, read_manifest
from edgectl.errors import EdgectlError, MissingDependencyError, ModelLoadError, SignatureError
from edgectl.log import get_logger

from .base import SessionOptions, Signature

log = get_logger("edgectl.runtime.litert")

_QUANTIZED = (np.int8, np.uint8, np.int16)
#: The SignatureDef litert-torch (and TensorFlow) write for the default entry point.
DEFAULT_SIGNATURE = "serving_default"


class BatchMode(StrEnum):
    """How a session runs a batch of N rows."""

    NATIVE = "native"  # the model's first dimension is dynamic
    RESIZE = "resize"  # a batch-1 model whose inputs resize to N and give the same answers
    ROW_BY_ROW = "row-by-row"  # a batch-1 model that cannot resize: rows run one at a time
    FIXED = "fixed"  # no leading batch dimension: shapes exactly as exported


class _Tensor:
    """One signature input or output: its name, interpreter index, dtype, shapes and quantization."""

    def __init__(self, name: str, details: dict[str, Any]) -> None:
        self.key = name  # the name the interpreter knows (SignatureDef key or tensor name)
        self.name = name  # the name callers use (the manifest's, after a rename)
        self.index = int(details["index"])
        self.dtype = np.dtype(details["dtype"])
        self.shape = tuple(int(d) for d in details["shape"])
        sig = details.get("shape_signature")
        self.shape_signature = tuple(int(d) for d in (sig if sig is not None and len(sig) else self.shape))
        scale, zero_point = details.get("quantization", (0.0, 0))
        self.scale = float(scale)
        self.zero_point = int(zero_point)

    @property
    def quantized(self) -> bool:
        return self.dtype.type in _QUANTIZED and self.scale > 0.0

    @property
    def public_dtype(self) -> str:
        return "float32" if self.quantized else self.dtype.name

    def quantize(self, value: np.ndarray) -> np.ndarray:
        if not self.quantized or value.dtype == self.dtype:
            return np.ascontiguousarray(value, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(value, dtype=np.float32) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, value: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return value
        return ((value.astype(np.float32) - self.zero_point) * self.scale).astype(np.float32)


def _interpreter_module(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


class LiteRTSession:
    """A loaded ``.tflite`` model. See the module docstring for names, quantized I/O, batching and threads."""

    def __init__(
        self,
        path: Path,
        options: SessionOptions,
        *,
        module: ModuleType,
        backend: str,
        names: tuple[list[str], list[str]] | None = None,
    ) -> None:
        """Load ``path`` with the interpreter class of ``module``.

        Args:
            path: the ``.tflite`` file.
            options: threads (0: the machine default) and whether XNNPACK may be used.
            module: ``ai_edge_litert.interpreter`` or ``tflite_runtime.interpreter``.
            backend: the backend name reported by :attr:`backend`.
            names: (inputs, outputs) names to expose instead of the model's own, in signature order.

        Raises:
            ModelLoadError: the file cannot be read or the interpreter cannot be built (a broken runtime build).
            SignatureError: ``names`` do not fit the model's inputs / outputs.
        """
        self.path = Path(path)
        self.backend = backend
        self.threads = options.threads or SessionOptions.default_threads()
        self.xnnpack = options.xnnpack
        self._module = module
        self._lock = threading.Lock()
        self._shapes: dict[int, tuple[int, ...]] = {}
        self._interp, self._runner, self._inputs, self._outputs = self._open()
        if names is not None:
            self._rename(*names)
        self.batch_mode = self._choose_batch_mode()
        self._signature = Signature(
            inputs=tuple(self._spec(t) for t in self._inputs),
            outputs=tuple(self._spec(t) for t in self._outputs),
        )
        # Which batching applies is worth a line in the daemon's log: row-by-row costs N calls per batch.
        log.info("%s on %s: batch mode %s, %d threads", self.path.name, backend, self.batch_mode, self.threads)

    # -- loading --------------------------------------------------------------------------------

    def _open(self) -> tuple[Any, Any, list[_Tensor], list[_Tensor]]:
        kwargs: dict[str, Any] = {"model_path": str(self.path), "num_threads": self.threads}
        if not self.xnnpack:
            kwargs["experimental_op_resolver_type"] = self._module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interp = self._module.Interpreter(**kwargs)
            sigs = interp.get_signature_list()
            runner = None
            if sigs:
                key = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in sigs else next(iter(sigs))
                if len(sigs) > 1 and key != DEFAULT_SIGNATURE:
                    raise ModelLoadError(
                        f"{self.path.name} has several signatures {sorted(sigs)} and none is '{DEFAULT_SIGNATURE}'; "
                        "edgectl serves one entry point.",
                        hint="Export the model with a single signature.",
                    )
                runner = interp.get_signature_runner(key)
                in_details = runner.get_input_details()
                out_details = runner.get_output_details()
                # The runner lists names alphabetically; the subgraph's input order is the signature order.
                order = {int(d["index"]): i for i, d in enumerate(interp.get_input_details())}
                out_order = {int(d["index"]): i for i, d in enumerate(interp.get_output_details())}
                inputs = sorted((_Tensor(n, d) for n, d in in_details.items()), key=lambda t: order.get(t.index, 0))
                outputs = sorted(
                    (_Tensor(n, d) for n, d in out_details.items()), key=lambda t: out_order.get(t.index, 0)
                )
            else:
                interp.allocate_tensors()
                self._shapes = {int(d["index"]): tuple(int(x) for x in d["shape"]) for d in interp.get_input_details()}
                inputs = [_Tensor(str(d["name"]), d) for d in interp.get_input_details()]
                outputs = [_Tensor(str(d["name"]), d) for d in interp.get_output_details()]
        except EdgectlError:
            raise
        except (SystemError, ImportError) as exc:
            # tflite-runtime 2.14 wheels are built against numpy 1.x: under numpy 2 the C extension fails here.
            raise ModelLoadError(
                f"{self.backend} cannot build an interpreter for {self.path.name} in this environment "
                f"(numpy {np.__version__}): {exc!r}.",
                hint="tflite-runtime 2.14 does not work with numpy 2; install ai-edge-litert "
                "(pip install 'edgectl[tflite]') or pin numpy<2.",
            ) from exc
        except Exception as exc:  # the interpreter raises ValueError / RuntimeError for unreadable files
            raise ModelLoadError(f"{self.backend} could not load {self.path}: {exc}".strip()) from exc
        return interp, runner, inputs, outputs

    def _rename(self, inputs: list[str], outputs: list[str]) -> None:
        if len(inputs) != len(self._inputs) or len(outputs) != len(self._outputs):
            raise SignatureError(
                f"{self.path.name} has {len(self._inputs)} inputs / {len(self._outputs)} outputs "
                f"({[t.name for t in self._inputs]} -> {[t.name for t in self._outputs]}); the manifest names "
                f"{inputs} -> {outputs}.",
                hint="The TFLite file does not belong to this manifest; re-convert the model.",
            )
        for tensors, wanted in ((self._inputs, inputs), (self._outputs, outputs)):
            if {t.name for t in tensors} == set(wanted):
                continue  # same names (an edgectl export): match by name, whatever the order
            for tensor, name in zip(tensors, wanted, strict=True):
                tensor.name = name  # another tool's names (args_0, ...): map by signature order

    def _choose_batch_mode(self) -> BatchMode:
        tensors = [*self._inputs, *self._outputs]
        if any(len(t.shape_signature) == 0 for t in tensors):
            return BatchMode.FIXED
        if all(t.shape_signature[0] == -1 for t in tensors):
            return BatchMode.NATIVE
        if not all(t.shape[0] == 1 for t in tensors):
            return BatchMode.FIXED
        return BatchMode.RESIZE if self._resize_matches_rows() else BatchMode.ROW_BY_ROW

    def _resize_matches_rows(self) -> bool:
        """Run two probe rows one by one and as one batch of 2; resizing is used only if both agree."""
        rng = np.random.default_rng(0)
        rows = [{t.name: _probe(t, rng) for t in self._inputs} for _ in range(2)]
        try:
            singles = [self._invoke(row) for row in rows]
            batched = self._invoke({t.name: np.concatenate([r[t.name] for r in rows]) for t in self._inputs})
            ok = all(
                batched[t.name].shape[0] == 2
                and np.allclose(
                    t.dequantize(batched[t.name]),
                    np.concatenate([t.dequantize(s[t.name]) for s in singles]),
                    rtol=1e-3,
                    atol=max(1e-4, 2 * t.scale),
                )
                for t in self._outputs
            )
        except Exception as exc:  # e.g. "XNNPack delegate failed to reshape": this model cannot resize
            log.debug("%s cannot run a resized batch: %s", self.path.name, exc)
            ok = False
        try:
            self._invoke(rows[0])  # back to batch 1, so the arena is sized for the common case
        except Exception:  # a failed resize can leave the interpreter unusable: start a fresh one
            self._shapes.clear()
            self._interp, self._runner, fresh_in, fresh_out = self._open()
            for new, old in zip([*fresh_in, *fresh_out], [*self._inputs, *self._outputs], strict=True):
                new.name = old.name
            self._inputs, self._outputs = fresh_in, fresh_out
        return ok

    def _spec(self, t: _Tensor) -> TensorSpec:
        shape = list(t.shape_signature)
        if self.batch_mode is not BatchMode.FIXED:
            shape[0] = -1
        return TensorSpec(t.name, t.public_dtype, tuple(-1 if d < 0 else d for d in shape))

    # -- running --------------------------------------------------------------------------------

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def quantized_io(self) -> dict[str, tuple[float, int]]:
        """(scale, zero point) of every quantized input and output, by name."""
        return {t.name: (t.scale, t.zero_point) for t in [*self._inputs, *self._outputs] if t.quantized}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Returns float32 for quantized outputs, the model's dtype otherwise.

        Raises:
            SignatureError: unknown / missing input names, a wrong rank or non-batch dimension, or inputs whose
                batch sizes differ.
        """
        feeds = self._prepare(inputs)
        with self._lock:
            if self.batch_mode is BatchMode.ROW_BY_ROW:
                n = next(iter(feeds.values())).shape[0]
                parts = [self._invoke({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
                raw = {t.name: np.concatenate([p[t.name] for p in parts]) for t in self._outputs}
            else:
                raw = self._invoke(feeds)
        return {t.name: t.dequantize(raw[t.name]) for t in self._outputs}

    def _prepare(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = [t.name for t in self._inputs]
        if set(inputs) != set(expected):
            raise SignatureError(f"Model expects inputs {sorted(expected)}, got {sorted(inputs)}.")
        feeds: dict[str, np.ndarray] = {}
        batch: int | None = None
        for t, spec in zip(self._inputs, self._signature.inputs, strict=True):
            value = np.asarray(inputs[t.name])
            if value.ndim != len(spec.shape) or any(
                want not in (-1, have) for want, have in zip(spec.shape, value.shape, strict=True)
            ):
                raise SignatureError(
                    f"Input '{t.name}' has shape {list(value.shape)}; the model takes {list(spec.shape)} "
                    "(-1: any size)."
                )
            if self.batch_mode is not BatchMode.FIXED:
                if batch is not None and value.shape[0] != batch:
                    raise SignatureError(f"Inputs have different batch sizes ({batch} and {value.shape[0]}).")
                batch = value.shape[0]
            feeds[t.name] = t.quantize(value)
        return feeds

    def _invoke(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One interpreter call on already-typed arrays (callers hold the lock)."""
        if self._runner is not None:
            # The signature runner resizes inputs whose shape changed and re-allocates only then.
            result = self._runner(**{t.key: feeds[t.name] for t in self._inputs})
            return {t.name: np.array(result[t.key]) for t in self._outputs}
        for t in self._inputs:
            if self._shapes.get(t.index) != feeds[t.name].shape:
                self._interp.resize_tensor_input(t.index, list(feeds[t.name].shape), strict=False)
                self._shapes[t.index] = feeds[t.name].shape
        self._interp.allocate_tensors()
        for t in self._inputs:
            self._interp.set_tensor(t.index, feeds[t.name])
        self._interp.invoke()
        return {t.name: np.array(self._interp.get_tensor(t.index)) for t in self._outputs}

    def close(self) -> None:
        with self._lock:
            self._runner = None
            self._interp = None


def _probe(t: _Tensor, rng: np.random.Generator) -> np.ndarray:
    shape = (1, *t.shape[1:])
    if np.issubdtype(t.dtype, np.integer):
        info = np.iinfo(t.dtype)
        lo, hi = (max(info.min, -100), min(info.max, 100)) if not t.quantized else (info.min, info.max)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(t.dtype)
    if t.dtype == np.bool_:
        return rng.integers(0, 1, size=shape, endpoint=True).astype(np.bool_)
    return rng.standard_normal(shape).astype(t.dtype)


# -- backends -------------------------------------------------------------------------------------


def _bundle_manifest(path: Path) -> Manifest | None:
    """The manifest of the bundle ``path`` lies in, if it lists ``path`` as an artifact."""
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = read_manifest(path.parent)
    return manifest if any(a.path == path.name for a in manifest.artifacts) else None


def _kind(dtype: str) -> str:
    return "b" if dtype == "bool" else np.dtype(dtype).kind.replace("u", "i")


def check_against_manifest(session: LiteRTSession, manifest: Manifest) -> None:
    """Raise :class:`SignatureError` unless the session's signature fits the manifest's (names, ranks, dims).

    Dimensions of -1 on either side match anything; integer widths may differ (litert-torch stores int64 as
    int32 and the session casts), but a float tensor never stands in for an integer one.
    """
    have_by_name = {t.name: t for t in [*session.signature.inputs, *session.signature.outputs]}
    for want in [*manifest.inputs, *manifest.outputs]:
        have = have_by_name.get(want.name) or TensorSpec("<missing>", "bool", ())
        dims_ok = len(want.shape) == len(have.shape) and all(
            w == h or -1 in (w, h) for w, h in zip(want.shape, have.shape, strict=True)
        )
        if have.name != want.name or not dims_ok or _kind(want.dtype) != _kind(have.dtype):
            raise SignatureError(
                f"{session.path.name} does not match the manifest of {manifest.bundle_dirname}: the manifest has "
                f"'{want.name}' {want.dtype} {list(want.shape)}, the model has '{have.name}' {have.dtype} "
                f"{list(have.shape)}.",
                hint="The TFLite file was not produced for this manifest; re-convert the model.",
            )


class LiteRTBackend:
    """``ai-edge-litert`` (LiteRT): XNNPACK on CPU, ``threads`` from :class:`SessionOptions`."""

    name = "litert"
    formats: tuple[str, ...] = ("tflite",)
    module_name = "ai_edge_litert.interpreter"
    package = "ai-edge-litert"
    extra = "tflite"

    def available(self) -> bool:
        try:
            _interpreter_module(self.module_name)
        except Exception:  # a broken install raises more than ImportError; either way it cannot run models
            return False
        return True

    def load(self, path: Path, options: SessionOptions) -> LiteRTSession:
        """Load a ``.tflite`` file; inside a bundle, map and check its names against the manifest.

        Raises:
            MissingDependencyError: the interpreter package is not installed.
            ModelLoadError: the file cannot be loaded by this runtime build.
            SignatureError: the model does not fit its bundle's manifest.
        """
        try:
            module = _interpreter_module(self.module_name)
        except ImportError as exc:
            raise MissingDependencyError(self.package, extra=self.extra, purpose="Running TFLite models") from exc
        path = Path(path)
        manifest = _bundle_manifest(path)
        names = None
        if manifest is not None:
            names = ([t.name for t in manifest.inputs], [t.name for t in manifest.outputs])
        session = LiteRTSession(path, options, module=module, backend=self.name, names=names)
        if manifest is not None:
            check_against_manifest(session, manifest)
        return session


class TfliteRuntimeBackend(LiteRTBackend):
    """Legacy ``tflite-runtime`` (old Raspberry Pi images). Used only when ai-edge-litert is absent.

    Its 2.14 wheels are built for numpy 1.x: under numpy 2 the interpreter cannot be created
    (:class:`ModelLoadError` says so), and on some newer int8 models it returns wrong numbers without an
    error, which the golden check at activation turns into a refusal.
    """

    name = "tflite-runtime"
    module_name = "tflite_runtime.interpreter"
    package = "tflite-runtime"
    extra = "tflite-legacy"
