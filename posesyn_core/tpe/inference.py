"""The inference API every stage that runs a pose estimator uses (eem, filter, evaluate).

    est = load_estimator(store, "tpe-train/model.pt", device="cpu")          # our checkpoint
    est = load_estimator(store, EstimatorRef(kind="onnx", path="/models/hmr.onnx"), "cpu")   # someone else's
    pred = est.predict(images, bboxes)   # list of RGB uint8 images (H, W, 3), bboxes (N, 4) x y w h
    pred.joints3d  (N, 22, 3) root-relative, camera frame (OpenCV), metres, SMPL22 order
    pred.cam       (N, 3) weak perspective s, tx, ty over the crop
    pred.joints2d  (N, 22, 2) the 3D joints projected into the image, pixels

An `Estimator` crops (square around the bbox, `crop_pad` x its longer side, resized to `img_size`), batches,
runs a backend under `torch.inference_mode` and maps the weak-perspective projection back to image pixels. The
backend is any callable from a float32 batch (B, 3, S, S) RGB in [0, 1] to (joints3d (B, 22, 3), cam (B, 3)):
our TPE, a TorchScript module or an ONNX session (the external-estimator contract; `export_torchscript` and
`export_onnx` write our TPE in it, with img_size/crop_pad embedded as metadata).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posesyn_core.errors import ConfigError
from posesyn_core.geometry import weak_perspective_to_image
from posesyn_core.skeleton import NUM_JOINTS
from posesyn_core.storage import Store
from posesyn_core.tpe.config import EstimatorRef
from posesyn_core.tpe.data import crop_box, crop_square, resolve_file
from posesyn_core.tpe.model import TPE, model_from_checkpoint

METADATA_KEY = "posesyn.json"  # TorchScript extra file / ONNX metadata entry holding img_size and crop_pad
DEFAULT_IMG_SIZE, DEFAULT_CROP_PAD = 64, 1.2

Backend = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Prediction:
    joints3d: np.ndarray  # (N, 22, 3) root-relative camera-frame metres
    cam: np.ndarray  # (N, 3) s, tx, ty
    joints2d: np.ndarray  # (N, 22, 2) image pixels (crop pixels for predict_crops)

    def __len__(self) -> int:
        return len(self.joints3d)


class Estimator:
    """Crop -> backend -> back to image pixels. Deterministic: same inputs, same outputs."""

    def __init__(self, backend: Backend, img_size: int, crop_pad: float, name: str = "estimator"):
        self.backend, self.img_size, self.crop_pad, self.name = backend, img_size, crop_pad, name

    def crops(self, images: Sequence[np.ndarray], bboxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's input crops (N, S, S, 3) uint8 and their square boxes (N, 4) in image pixels."""
        bboxes = np.asarray(bboxes, np.float64).reshape(-1, 4)
        if len(images) != len(bboxes):
            raise ValueError(f"images ({len(images)}) and bboxes ({len(bboxes)}) differ in length")
        boxes = crop_box(bboxes, self.crop_pad)
        crops = np.zeros((len(images), self.img_size, self.img_size, 3), np.uint8)
        for i, (img, box) in enumerate(zip(images, boxes, strict=True)):
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"image {i}: expected RGB (H, W, 3), got shape {img.shape}")
            crops[i] = crop_square(img, box, self.img_size)[0]
        return crops, boxes

    def predict_crops(self, crops: np.ndarray, batch_size: int = 64) -> Prediction:
        """Run on ready crops (N, S, S, 3) uint8 RGB (square box around the person, `crop_pad` context);
        joints2d are in crop pixels."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.img_size, self.img_size, 3):
            raise ValueError(f"crops: expected (N, {self.img_size}, {self.img_size}, 3), got {crops.shape}")
        joints, cams = [np.zeros((0, NUM_JOINTS, 3), np.float32)], [np.zeros((0, 3), np.float32)]
        for start in range(0, len(crops), batch_size):
            x = crops[start : start + batch_size].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
            j, c = self.backend(np.ascontiguousarray(x))
            joints.append(np.asarray(j, np.float32))
            cams.append(np.asarray(c, np.float32))
        joints3d, cam = np.concatenate(joints), np.concatenate(cams)
        if joints3d.shape[1:] != (NUM_JOINTS, 3) or cam.shape[1:] != (3,):
            raise ValueError(f"{self.name}: backend returned joints3d {joints3d.shape[1:]} and cam "
                             f"{cam.shape[1:]}, expected (22, 3) and (3,)")  # fmt: skip
        box = np.array([0.0, 0.0, self.img_size, self.img_size])
        return Prediction(joints3d, cam, weak_perspective_to_image(joints3d, cam, box).astype(np.float32))

    def predict(self, images: Sequence[np.ndarray], bboxes: np.ndarray, batch_size: int = 64) -> Prediction:
        """Full RGB images (any sizes) and one person box (x y w h) each -> Prediction in image pixels."""
        crops, boxes = self.crops(images, bboxes)
        pred = self.predict_crops(crops, batch_size)
        pred.joints2d = weak_perspective_to_image(pred.joints3d, pred.cam, boxes).astype(np.float32)
        return pred


def torch_backend(module: torch.nn.Module, device: str) -> Backend:
    # channels-last: oneDNN's small-channel convolutions run several times faster on CPU in this layout
    module = module.to(device, memory_format=torch.channels_last).eval()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            j, c = module(torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last))
        return j.float().cpu().numpy(), c.float().cpu().numpy()

    return run


def onnx_backend(path: str) -> Backend:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()  # share the CPU budget the process was given
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        j, c = session.run(None, {name: x})
        return j, c

    return run


def _local_path(store: Store, path: str, workdir: Path) -> str:
    """A local file for `path`: a URL (`s3://b/models/x.onnx`), a key under the run root, or a local path."""
    if "://" in path:
        src, key = resolve_file(store, path)
        return str(src.download(key, workdir / key))
    if not Path(path).is_absolute() and store.exists(path):
        return str(store.download(path, workdir / Path(path).name))
    if not Path(path).is_file():
        raise ConfigError(f"estimator path {path!r}: no such key under {store.url} and no such local file")
    return path


def load_estimator(store: Store, ref: EstimatorRef | str, device: str = "cpu") -> Estimator:
    """An Estimator from a PoseSyn checkpoint (a str is one: key under the root, URL or local path) or from an
    `EstimatorRef` naming a TorchScript/ONNX model."""
    ref = EstimatorRef(path=ref) if isinstance(ref, str) else ref
    with tempfile.TemporaryDirectory(prefix="posesyn-est-") as tmp:
        local = _local_path(store, ref.path, Path(tmp))
        meta: dict = {}
        if ref.kind == "posesyn":
            with open(local, "rb") as f:
                ckpt = torch.load(f, map_location="cpu", weights_only=True)
            try:
                model: torch.nn.Module = model_from_checkpoint(ckpt, ref.path)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            meta = {"img_size": model.config.img_size, "crop_pad": model.config.crop_pad}
            backend = torch_backend(model, device)
        elif ref.kind == "torchscript":
            extra = {METADATA_KEY: ""}
            module = torch.jit.load(local, map_location="cpu", _extra_files=extra)
            meta = json.loads(extra[METADATA_KEY]) if extra[METADATA_KEY] else {}
            backend = torch_backend(module, device)
        else:
            import onnx

            props = {p.key: p.value for p in onnx.load(local, load_external_data=False).metadata_props}
            meta = json.loads(props[METADATA_KEY]) if METADATA_KEY in props else {}
            backend = onnx_backend(local)  # the session has read the file: the temp dir may go
    img_size = ref.img_size or meta.get("img_size", DEFAULT_IMG_SIZE)
    crop_pad = ref.crop_pad or meta.get("crop_pad", DEFAULT_CROP_PAD)
    return Estimator(backend, int(img_size), float(crop_pad), name=f"{ref.kind}:{ref.path}")


def _metadata(model: TPE) -> str:
    return json.dumps({"img_size": model.config.img_size, "crop_pad": model.config.crop_pad})


def export_torchscript(model: TPE, path: str | Path) -> None:
    """Write our TPE as a traced TorchScript module in the external-estimator contract."""
    model = model.cpu().eval()
    example = torch.zeros(2, 3, model.config.img_size, model.config.img_size)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: _metadata(model)})


def export_onnx(model: TPE, path: str | Path) -> None:
    """Write our TPE as ONNX (input `images`, outputs `joints3d` and `cam`, dynamic batch)."""
    import onnx

    model = model.cpu().eval()
    example = torch.zeros(2, 3, model.config.img_size, model.config.img_size)
    torch.onnx.export(
        model, (example,), str(path), input_names=["images"], output_names=["joints3d", "cam"],
        dynamic_axes={"images": {0: "batch"}, "joints3d": {0: "batch"}, "cam": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, _metadata(model)
    onnx.save(proto, str(path))
