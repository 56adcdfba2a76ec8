"""Write a saved model as ONNX (first choice) or TorchScript, with everything needed to use it.

The ONNX graph takes normalised float images ``images`` (batch, 1, 28, 28) with a dynamic batch
axis and returns ``logits`` (batch, classes). Class names, mean/std, input size, architecture,
data set, data fingerprint, epoch and metrics travel as ONNX ``metadata_props`` (the
TorchScript file carries the same as an extra file ``fmnist.json``), so the export describes
itself like ``model.pt`` does.

Exports never destroy a user's file: the output may not be the model being exported or any other
file of its run folder, and an existing file is replaced only when it is itself an fmnist export
(or with ``force``). Writes go to a temporary file beside the output and are renamed into place; the
temporary file is removed on any error, Ctrl-C or SIGTERM (``fsio.cleanup_on_signals``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from fmnist.errors import FmnistError
from fmnist.export.onnx_runtime import FORMAT as ONNX_FORMAT
from fmnist.export.onnx_runtime import OnnxModel
from fmnist.fsio import cleanup_on_signals, write_bytes
from fmnist.models.checkpoint import unwrap
from fmnist.models.inference import LoadedModel, load_model
from fmnist.models.inputs import preprocess
from fmnist.models.record import model_digest

# onnx (the export extra) is imported where an ONNX file is made or read: TorchScript needs only torch.
TORCHSCRIPT_FORMAT = "fmnist-torchscript/1"
FORMATS = ("onnx", "torchscript")
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


def _jsonable(value):
    """numpy / torch values in a record's metrics -> numbers or lists; anything else -> its text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def description(loaded: LoadedModel) -> dict:
    """What an export must carry to be used alone: the record minus weights and training config."""
    r = loaded.record
    return {
        "classes": list(r["classes"]),
        "mean": float(r["mean"]),
        "std": float(r["std"]),
        "input_size": list(r.get("input_size", [1, 28, 28])),
        "input_name": "images",
        "input_meaning": "float32 (batch, 1, 28, 28) = (uint8 / 255 - mean) / std; article light on black",
        "arch": str(r.get("arch", "")),
        "arch_kwargs": dict(r.get("arch_kwargs", {})),
        "dataset": str(r.get("dataset", "")),
        "data_fingerprint": str(r.get("data_fingerprint", "")),
        "epoch": r.get("epoch"),
        "metrics": dict(r.get("metrics", {})),
        "source_sha256": model_digest(loaded.path),
        # The temperature is applied inside the graph: its "logits" output is already divided by it.
        "temperature": loaded.calibration.temperature,
        "abstain_threshold": loaded.calibration.to_dict()["abstain_threshold"],  # None: never abstains
        "abstain_score": loaded.calibration.abstain_score,
        "class_offsets": list(loaded.calibration.class_offsets),
    }


def metadata(loaded: LoadedModel) -> dict[str, str]:
    """The description as ONNX metadata_props: strings only, JSON for anything not a string."""
    return {"fmnist_format": ONNX_FORMAT} | {
        k: v if isinstance(v, str) else json.dumps(v, default=_jsonable)
        for k, v in description(loaded).items()
    }


@contextlib.contextmanager
def _quiet():
    """The dynamo exporter logs warnings (e.g. torchvision missing) that mean nothing here."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _onnx_proto(net: torch.nn.Module, example: torch.Tensor):
    """The ONNX ModelProto: dynamo exporter first (torch >= 2.5), the classic one as a fallback."""
    import onnx

    try:
        with _quiet():
            program = torch.onnx.export(
                net,
                (example,),
                dynamo=True,  # opset 18, its default; onnxruntime >= 1.16 runs it
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                optimize=True,
                verbose=False,
            )
        return program.model_proto, "dynamo"
    except Exception as first:  # an older torch or an op the dynamo path cannot take
        buffer = io.BytesIO()
        try:
            with _quiet():
                torch.onnx.export(
                    net,
                    (example,),
                    buffer,
                    dynamo=False,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=17,
                )
        except Exception as second:
            raise FmnistError(
                f"ONNX export failed: dynamo exporter: {type(first).__name__}: {first}; "
                f"classic exporter: {type(second).__name__}: {second}"
            ) from None
        return onnx.load_from_string(buffer.getvalue()), "torchscript-based"


class Calibrated(torch.nn.Module):
    """The network with its calibration temperature inside: logits / T, so any runtime's softmax is calibrated."""

    def __init__(self, net: torch.nn.Module, temperature: float) -> None:
        super().__init__()
        self.net, self.scale = net, 1.0 / temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


def _export_copy(loaded: LoadedModel) -> torch.nn.Module:
    """A CPU float32 copy in eval mode (exporting must not move or change the caller's model), calibrated."""
    net = copy.deepcopy(unwrap(loaded.model)).cpu().float().eval().to(memory_format=torch.contiguous_format)
    return Calibrated(net, loaded.calibration.temperature).eval()


def export_onnx(loaded: LoadedModel, out: str | os.PathLike) -> Path:
    """Write ``loaded`` as ONNX to ``out`` (atomically) with the metadata; returns the path."""
    import onnx

    net = _export_copy(loaded)
    example = torch.zeros(2, *loaded.record.get("input_size", [1, 28, 28]))
    proto, exporter = _onnx_proto(net, example)
    meta = metadata(loaded) | {"exporter": exporter, "torch_version": torch.__version__}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "fmnist"
    onnx.checker.check_model(proto)
    write_bytes(out, proto.SerializeToString())
    return Path(out)


def export_torchscript(loaded: LoadedModel, out: str | os.PathLike) -> Path:
    """Write ``loaded`` as a traced TorchScript module with ``fmnist.json`` metadata (deprecated upstream)."""
    net = _export_copy(loaded)
    example = torch.zeros(2, *loaded.record.get("input_size", [1, 28, 28]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        scripted = torch.jit.trace(net, example)
        buffer = io.BytesIO()
        meta = {"fmnist_format": TORCHSCRIPT_FORMAT} | description(loaded)
        torch.jit.save(scripted, buffer, _extra_files={"fmnist.json": json.dumps(meta, default=_jsonable)})
    write_bytes(out, buffer.getvalue())
    return Path(out)


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict]:
    """Read a TorchScript export back: (module in eval mode, metadata dict)."""
    extra = {"fmnist.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise FmnistError(f"{path}: not a readable TorchScript file ({type(exc).__name__})") from None
    if not extra["fmnist.json"]:
        raise FmnistError(
            f"{path}: no fmnist metadata inside; export it with `fmnist export RUN_DIR --format torchscript`"
        )
    return module.eval(), json.loads(extra["fmnist.json"])


def is_export(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file an fmnist export wrote (ONNX or TorchScript carrying fmnist metadata)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):  # TorchScript: a zip with extra/fmnist.json
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("/extra/fmnist.json")), None)
                if name is None:
                    return False
                return json.loads(archive.read(name)).get("fmnist_format") == TORCHSCRIPT_FORMAT
        if path.stat().st_size >= 2**31:  # protobuf's limit: no ONNX model file is that big
            return False
        import onnx

        proto = onnx.load_model(str(path), load_external_data=False)
        return any(p.key == "fmnist_format" and p.value == ONNX_FORMAT for p in proto.metadata_props)
    except Exception:  # unreadable, not a zip, not a protobuf: not ours
        return False


def check_output(out: Path, model_path: Path, force: bool = False) -> None:
    """Refuse (one line) an output that would destroy something: the model itself, another file of its
    run folder, or an existing file that an earlier export did not write (``force`` allows the last)."""
    if out.is_dir():
        raise FmnistError(f"{out}: is a folder; give a file name with --out")
    if not (out.exists() or out.is_symlink()):
        return
    if out.resolve() == model_path.resolve() or (out.exists() and os.path.samefile(out, model_path)):
        raise FmnistError(f"{out}: is the model being exported; choose another --out")
    if is_export(out):
        return  # an earlier export's output: replacing it is what exporting again means
    run_file = out.resolve().parent == model_path.resolve().parent
    if run_file and out.name not in DEFAULT_NAMES.values():
        raise FmnistError(
            f"{out}: is a file of the run in {model_path.parent} (not an export); choose another --out"
        )
    if not force:
        raise FmnistError(
            f"{out}: exists and is not an fmnist export; choose another --out (or --force to replace it)"
        )


def export(
    run_or_model: str | os.PathLike | LoadedModel,
    fmt: str = "onnx",
    out: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Export the model saved in a run folder (or a ``model.pt``); default output beside it.

    The output is checked before anything is exported (:func:`check_output`); ``force`` replaces an
    existing file that is not an fmnist export, never the model or the other files of its run.
    """
    if fmt not in FORMATS:
        raise FmnistError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    loaded = run_or_model if isinstance(run_or_model, LoadedModel) else load_model(run_or_model, device="cpu")
    out = Path(out) if out is not None else loaded.path.parent / DEFAULT_NAMES[fmt]
    check_output(out, Path(loaded.path), force)
    with cleanup_on_signals():  # SIGTERM / Ctrl-C mid-write: the temp file is removed, the output untouched
        return export_onnx(loaded, out) if fmt == "onnx" else export_torchscript(loaded, out)


def check_export(
    loaded: LoadedModel, path: str | os.PathLike, fmt: str, n: int = 256, seed: int = 0
) -> float:
    """Largest |logit difference| between the export and torch on ``n`` seeded random uint8 images, both
    over the model's temperature (what the exported graph computes)."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    want = loaded.logits(images).numpy() / loaded.calibration.temperature
    if fmt == "onnx":
        got = OnnxModel(path).calibrated_logits(images)
    else:
        module, _ = load_torchscript(path)
        with torch.no_grad():
            got = module(preprocess(images, loaded.mean, loaded.std)).numpy()
    return float(np.abs(got - want).max())
