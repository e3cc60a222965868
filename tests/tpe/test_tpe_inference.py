"""The inference API and the external-estimator adapter (TorchScript / ONNX exports of our own TPE)."""

import numpy as np
import pytest
import torch

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.errors import ConfigError
from posesyn_core.storage import open_store
from posesyn_core.tpe.config import EstimatorRef
from posesyn_core.tpe.data import crop_box
from posesyn_core.tpe.inference import export_onnx, export_torchscript, load_estimator
from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict
from posesyn_core.tpe.train import save_torch


@pytest.fixture(scope="module")
def setup(stick_root):
    """A TPE with random (non-zero) output weights saved as a checkpoint, and 10 test images."""
    torch.manual_seed(0)
    model = TPE(TPEConfig(img_size=32, widths=(8, 16), head_dim=16))
    torch.nn.init.normal_(model.head[-1].weight, std=0.05)
    store = open_store(stick_root.as_uri())
    save_torch(store, "models/tpe.pt", checkpoint_dict(model.eval()))
    ds = PoseDataset(store, "world/wild_test")
    images = [ds.image(i) for i in range(10)]
    return store, model, images, ds.arrays["bboxes"][:10]


def test_predict_shapes_determinism_and_batching(setup):
    store, _, images, bboxes = setup
    est = load_estimator(store, "models/tpe.pt", "cpu")
    assert (est.img_size, est.crop_pad) == (32, 1.2)
    pred = est.predict(images, bboxes)
    assert pred.joints3d.shape == (10, 22, 3) and pred.cam.shape == (10, 3) and pred.joints2d.shape == (10, 22, 2)
    assert np.all(pred.joints3d[:, 0] == 0)
    again = est.predict(images, bboxes, batch_size=3)  # other batch split, same numbers
    assert np.allclose(pred.joints3d, again.joints3d, atol=1e-5)
    assert np.array_equal(pred.joints3d, est.predict(images, bboxes).joints3d)


def test_predict_crops_agrees_with_predict(setup):
    store, _, images, bboxes = setup
    est = load_estimator(store, "models/tpe.pt")
    crops, boxes = est.crops(images, bboxes)
    assert crops.shape == (10, 32, 32, 3) and crops.dtype == np.uint8
    on_crops = est.predict_crops(crops)
    full = est.predict(images, bboxes)
    assert np.array_equal(on_crops.joints3d, full.joints3d)
    # crop pixels -> image pixels: scale by box side / crop side, shift by the box corner
    in_image = boxes[:, None, :2] + on_crops.joints2d * (boxes[:, None, 2:3] / 32)
    assert np.allclose(in_image, full.joints2d, atol=1e-3)
    assert np.allclose(boxes, crop_box(bboxes, 1.2))


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_exported_model_loads_through_the_adapter(setup, tmp_path, kind):
    store, model, images, bboxes = setup
    path = tmp_path / f"tpe.{kind}"
    (export_torchscript if kind == "torchscript" else export_onnx)(model, path)
    ours = load_estimator(store, "models/tpe.pt").predict(images, bboxes)
    ext = load_estimator(store, EstimatorRef(kind=kind, path=str(path)))
    assert (ext.img_size, ext.crop_pad) == (32, 1.2)  # from the metadata embedded by the export
    theirs = ext.predict(images, bboxes, batch_size=4)
    assert np.allclose(ours.joints3d, theirs.joints3d, atol=1e-4)
    assert np.allclose(ours.cam, theirs.cam, atol=1e-4)
    assert np.allclose(ours.joints2d, theirs.joints2d, atol=1e-2)
    # the same model uploaded under the run root is found by key as well
    store.upload(path, f"models/ext.{kind}")
    by_key = load_estimator(store, EstimatorRef(kind=kind, path=f"models/ext.{kind}", img_size=32))
    assert np.allclose(by_key.predict(images, bboxes).joints3d, theirs.joints3d, atol=1e-6)


def test_missing_or_wrong_models_fail_clearly(setup, tmp_path):
    store = setup[0]
    with pytest.raises(ConfigError, match="no such key"):
        load_estimator(store, "models/nope.pt")
    bogus = tmp_path / "bogus.pt"
    torch.save({"format": "something-else"}, bogus)
    with pytest.raises(ConfigError, match="not a PoseSyn TPE checkpoint"):
        load_estimator(store, str(bogus))


def test_cli_export_writes_a_loadable_model(setup, tmp_path, stick_root):
    from click.testing import CliRunner

    from posesyn_core.tpe.commands import tpe

    store, _, images, bboxes = setup
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(tpe, ["export", str(stick_root / "models" / "tpe.pt"), str(out)])
    assert result.exit_code == 0, result.output
    ours = load_estimator(store, "models/tpe.pt").predict(images, bboxes)
    theirs = load_estimator(store, EstimatorRef(kind="onnx", path=str(out))).predict(images, bboxes)
    assert np.allclose(ours.joints3d, theirs.joints3d, atol=1e-4)
    bad = CliRunner().invoke(tpe, ["export", str(tmp_path / "missing.pt"), str(out)])
    assert bad.exit_code != 0 and "no such checkpoint" in str(bad.exception)
