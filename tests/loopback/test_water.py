"""Water extraction (issue 15): labels and their noise, the pixel CNN, chunked maps, Earth Engine graph.

The network tests need the ``lcgee[water]`` extra (JAX) and are skipped without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lcgee import water

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12", "NDVI", "MNDWI"]
REFLECTANCE = BANDS[:6]


# ----------------------------------------------------------------------------- labels


def test_noisy_labels_sources_and_noise_rates():
    wc = np.array([[80, 80, 10, 0], [40, 80, 10, 10]], np.uint8)
    frac = np.array([[0.9, 0.1, 0.6, np.nan], [0.0, np.nan, 0.2, np.nan]], np.float32)
    assert water.noisy_labels(wc, None, source="worldcover").tolist() == [[1, 1, 0, 255],
                                                                        [0, 1, 0, 0]]
    assert water.noisy_labels(None, frac, source="scl").tolist() == [[1, 0, 1, 255],
                                                                    [0, 255, 0, 255]]
    both = water.noisy_labels(wc, frac, source="both")
    assert both.tolist() == [[1, 1, 1, 255], [0, 1, 0, 0]]
    truth = np.array([[1, 0, 0, 0], [0, 1, 1, 0]], bool)
    noise = water.label_noise(both, truth)
    # labelled water: 4 px, of which 2 are not water; true water 3 px (all known), 1 missed
    assert noise["false_water_rate"] == pytest.approx(2 / 4)
    assert noise["missed_water_rate"] == pytest.approx(1 / 3)


def test_scl_water_fraction_counts_only_clear_scenes():
    scl = np.array([[[6, 6]], [[6, 4]], [[4, 6]]], np.uint8)
    clear = np.array([[[1, 1]], [[0, 1]], [[1, 0]]], bool)
    frac = water.scl_water_fraction(scl, clear)
    assert frac.tolist() == [[0.5, 0.5]]
    assert np.isnan(water.scl_water_fraction(scl, np.zeros_like(clear))).all()


def _scene_features(world):
    """Clean surface reflectance of the small world's first scene + NDVI, MNDWI, (band, y, x)."""
    item = world.scenes()[0]["item_id"]
    refl = []
    for b in REFLECTANCE:
        band = world.surface_reflectance(item, b).astype(np.float32) / 1e4
        factor = world.spec.size // band.shape[0]  # 20 m bands onto the 10 m grid
        refl.append(np.kron(band, np.ones((factor, factor), np.float32)))
    b03, b04, b08, b11 = refl[1], refl[2], refl[3], refl[4]
    return np.stack(refl + [(b08 - b04) / (b08 + b04), (b03 - b11) / (b03 + b11)])


def test_label_correction_reduces_noise_against_truth(small_world):
    truth = small_world.truth_landcover() == water.WATER_CODE
    feats = _scene_features(small_world)
    # noisy labels: the demo's published map (WorldCover-like errors) plus SCL-like blobs of
    # false water on land and missed water, as automatic labels have
    noisy = water.noisy_labels(small_world.labels(), None, source="worldcover")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:noisy.shape[0], :noisy.shape[1]]
    for _ in range(12):
        cy, cx = rng.integers(0, noisy.shape[0], 2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
        noisy[blob & ~truth & (rng.random() < 0.5)] = 1
        noisy[blob & truth] = 0
    before = water.label_noise(noisy, truth)
    fixed, history = water.correct_labels(feats, noisy, iterations=3, confidence=0.95, seed=0)
    after = water.label_noise(fixed, truth)
    assert history and history[0]["to_water"] + history[0]["to_not_water"] > 0
    assert after["disagreement"] < 0.2 * before["disagreement"], (before, after)
    assert after["false_water_rate"] < before["false_water_rate"]
    assert after["missed_water_rate"] < before["missed_water_rate"]


def test_otsu_threshold_splits_two_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-0.4, 0.05, 5000), rng.normal(0.3, 0.05, 1000), [np.nan]])
    assert -0.3 < water.otsu_threshold(values) < 0.15  # in the gap between the modes


def test_water_scores_known_numbers():
    pred = np.array([1, 1, 0, 0, 1], bool)
    truth = np.array([1, 0, 1, 0, 1], bool)
    s = water.water_scores(pred, truth)
    assert (s["precision"], s["recall"]) == (pytest.approx(2 / 3, abs=1e-4),
                                             pytest.approx(2 / 3, abs=1e-4))
    assert water.paddy_as_water(pred, np.array([41, 41, 30, 41, 80])) == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- network


@pytest.fixture(scope="module")
def trained():
    """A tiny model on synthetic features (two epochs: only the arithmetic is under test)."""
    pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    h, w = 48, 56
    refl = rng.uniform(0.02, 0.4, size=(6, h, w)).astype(np.float32)
    refl[:, 20:30, 10:25] *= np.array([1.0, 1.2, 0.5, 0.1, 0.05, 0.05], np.float32)[:, None, None]
    refl[2, 5, 7] = np.nan  # a masked pixel inside
    refl[:, :, -2:] = np.nan  # and a masked strip on an edge
    import xarray as xr

    from lcgee import indices

    da = xr.DataArray(refl, dims=("band", "y", "x"), coords={"band": REFLECTANCE})
    feats = indices.compute_indices(da, ["NDVI", "MNDWI"])
    labels = np.zeros((h, w), np.uint8)
    labels[20:30, 10:25] = 1
    arr = np.asarray(feats.sel(band=BANDS).values, np.float32)
    patches, y = water.sample_patches(arr, labels, per_class=150, seed=1)
    model = water.train_network(patches, y, BANDS, epochs=2, seed=0)
    return model, feats, arr, patches, y


def test_training_is_deterministic(trained):
    model, _, _, patches, y = trained
    again = water.train_network(patches, y, BANDS, epochs=2, seed=0)
    for key, value in model.weights.items():
        np.testing.assert_array_equal(value, again.weights[key])
    assert [h["epoch"] for h in model.history] == [1, 2]


def test_chunked_prediction_equals_whole_image(trained):
    model, _, arr, _, _ = trained
    whole = water.predict_probability(model, arr, chunk=10_000)
    assert np.isfinite(whole).sum() > 0.9 * whole.size
    for chunk in (7, 16, 25):
        np.testing.assert_array_equal(water.predict_probability(model, arr, chunk=chunk), whole)


def test_image_network_equals_patch_network_on_complete_neighbourhoods(trained):
    model, _, arr, _, _ = trained
    whole = water.predict_probability(model, arr, chunk=20)
    rows, cols = np.mgrid[3:arr.shape[1] - 3, 3:arr.shape[2] - 3].reshape(2, -1)
    off = np.arange(-3, 4)
    patches = np.moveaxis(arr[:, rows[:, None, None] + off[None, :, None],
                              cols[:, None, None] + off[None, None, :]], 0, -1)
    complete = np.all(np.isfinite(patches), axis=(1, 2, 3))
    got = water.forward_patches(model, patches[complete])
    np.testing.assert_allclose(got, whole[rows[complete], cols[complete]], atol=2e-6)
    # a pixel next to a masked one is still mapped (zero-filled neighbour), its own NaN is not
    assert np.isfinite(whole[5, 8]) and np.isnan(whole[5, 7])


def test_model_bundle_round_trip(trained, tmp_path: Path):
    model, _, arr, _, _ = trained
    water.save_model(model, tmp_path)
    meta = json.loads((tmp_path / "water_model.json").read_text())
    assert meta["bands"] == BANDS and meta["provenance"]["framework"] == "jax"
    back = water.load_model(tmp_path)
    np.testing.assert_array_equal(water.predict_probability(back, arr, chunk=32),
                                  water.predict_probability(model, arr, chunk=32))


# ----------------------------------------------------------------------------- Earth Engine


def test_offline_earth_engine_graph_reproduces_the_framework(trained):
    pytest.importorskip("ee")
    from lcgee.gee import offline, session
    from lcgee.gee import water as gw

    model, feats, arr, _, _ = trained
    local = water.predict_probability(model, arr, chunk=16)
    session.init_offline()
    graph = gw.water_graph(model)
    assert {"Image.neighborhoodToArray", "Image.matrixMultiply"} <= offline.function_names(graph)
    composite = {b: np.asarray(feats.sel(band=b).values, np.float64) for b in REFLECTANCE}
    out = offline.evaluate_graph(graph, composite)
    ee_prob = out[gw.PROBABILITY_BAND]
    np.testing.assert_array_equal(np.isnan(ee_prob), np.isnan(local))
    ok = np.isfinite(local)
    assert np.max(np.abs(ee_prob[ok] - local[ok])) <= 1e-5
    np.testing.assert_array_equal(out[gw.CLASS_BAND][ok], (local[ok] > 0.5).astype(np.uint8))


def test_conv_matrix_weight_order():
    from lcgee.gee.water import conv_matrix

    k = np.zeros((3, 3, 2, 1))
    k[0, 2, 1, 0] = 5.0  # top row, right column, second input band
    m = conv_matrix(k)
    assert m.shape == (1, 18) and m[0, 1 * 9 + 0 * 3 + 2] == 5.0 and m.sum() == 5.0


def test_neighborhood_to_array_orientation_and_default():
    pytest.importorskip("ee")
    import ee

    from lcgee.gee import offline, session

    session.init_offline()
    image = ee.Image("src").select(["a"]).neighborhoodToArray(ee.Kernel.square(1, "pixels"), -9)
    a = np.arange(12, dtype=float).reshape(3, 4)
    a[1, 2] = np.nan
    out = offline.evaluate_graph(json.loads(image.serialize()), images={"src": {"a": a}},
                                 masked=True)["a"]
    arr = np.asarray(out.data)[1, 1]  # 3 x 3 around row 1, col 1
    assert arr.tolist() == [[0, 1, 2], [4, 5, -9], [8, 9, 10]]  # axis 0 = rows (Y), 1 = cols
    assert np.asarray(out.data)[0, 0].tolist()[0] == [-9, -9, -9]  # outside the image


def test_offline_evaluator_refuses_kernels_it_does_not_model():
    pytest.importorskip("ee")
    import ee

    from lcgee.gee import offline, session

    session.init_offline()
    a = {"a": np.ones((4, 4))}
    for kernel in (ee.Kernel.circle(1), ee.Kernel.square(10, "meters")):
        image = ee.Image("src").neighborhoodToArray(kernel)
        with pytest.raises(offline.UnsupportedOperationError):
            offline.evaluate_graph(json.loads(image.serialize()), images={"src": a})


# ----------------------------------------------------------------------------- runner


def test_run_skips_notebook_09_without_the_extra(monkeypatch):
    import importlib.util

    from lcgee import run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else real(name, *a))
    message = run.missing_extra(Path("notebooks/09_water.py"))
    assert message and "pip install -e '.[water]'" in message
    assert run.missing_extra(Path("notebooks/05_train.py")) is None


def test_window_prediction_equals_the_full_map(trained):
    from lcgee import water_stage

    model, _, arr, _, _ = trained
    whole = water.predict_probability(model, arr, chunk=64)
    for win in (("inner", 10, 12, 20, 25), ("corner", 0, 30, 17, 26)):
        _, r, c, h, w = win
        np.testing.assert_array_equal(water_stage.predict_window(model, arr, win, chunk=9),
                                      whole[r:r + h, c:c + w])


def test_run_skips_the_water_stage_and_records_why(tmp_path, monkeypatch, caplog):
    import importlib.util

    from lcgee import run

    (tmp_path / "p.yaml").write_text("name: skip\naoi: {bbox: [130.30, 33.50, 130.32, 33.52]}\n"
                                     "dates: {start: 2021-05-01, end: 2021-06-01}\n"
                                     "stac: {url: 'http://127.0.0.1:9/unused'}\n")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "09_water.py").write_text("# %%\nraise RuntimeError('must not run')\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else real(name, *a))
    with caplog.at_level("WARNING", logger="lcgee.run"):
        result = run.run(tmp_path / "p.yaml", out_dir=tmp_path / "out", notebooks_dir=nbs,
                         progress=False)
    assert result.stages == []
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "pip install -e '.[water]'" in record["skipped"]["09_water"]
    assert "09_water skipped" in caplog.text


def test_water_bands_missing_from_the_features_is_a_params_error():
    import xarray as xr

    from lcgee.errors import ParamsError
    from lcgee.water_stage import water_features

    da = xr.DataArray(np.zeros((2, 3, 3)), dims=("band", "y", "x"), coords={"band": ["B02", "NDVI"]})
    assert water_features(da, ["NDVI"]).shape == (1, 3, 3)
    with pytest.raises(ParamsError, match="MNDWI"):
        water_features(da, ["B02", "MNDWI"])


def test_held_out_scores_measure_each_method_in_the_window(trained):
    """Notebook 09's step 5 as one call: the four water maps of the held-out window and their
    scores against the truth, computed here independently from the same inputs."""
    from lcgee import water_stage
    from lcgee.layout import Window
    from lcgee.params import WaterParams

    model, feats, arr, _, _ = trained
    h, w = arr.shape[1:]
    truth = np.full((h, w), 10, np.uint8)
    truth[20:30, 10:25] = water.WATER_CODE
    subclass = truth.copy()
    subclass[30:36, 10:20] = 41  # rice paddies beside the pond
    landcover = truth.copy()
    landcover[20:24, 10:25] = 40  # the LightGBM map misses part of the pond
    win = Window("held", 4, 4, 36, 52)  # holds the masked pixel (5, 7) and the masked strip
    prob = water.predict_probability(model, arr, chunk=64)
    check = {"pixels": 5, "max_probability_diff": 0.0, "ee_probability": np.zeros(2),
             "functions": ["Image.matrixMultiply"]}
    scores = water_stage.held_out_scores({"noisy": model, "corrected": model}, arr, feats, prob,
                                         landcover, win, cfg=WaterParams(chunk=16), check=check,
                                         truth=truth, subclass=subclass, noise=None)

    cut = (slice(4, 40), slice(4, 56))
    g, n = (feats.sel(band=b).values[cut].astype(np.float64) for b in ("B03", "B08"))
    ndwi = (g - n) / (g + n)
    valid = np.isfinite(ndwi) & np.isfinite(prob[cut])
    assert valid.sum() < valid.size  # the masked pixel and strip are left out
    expected = water.water_scores(prob[cut] > 0.5, truth[cut] == water.WATER_CODE, valid)
    got = scores.metrics["f1"]["c_cnn_corrected"]
    assert {k: got[k] for k in expected} == expected
    assert got["paddy_as_water"] == round(water.paddy_as_water(prob[cut] > 0.5, subclass[cut],
                                                               valid), 4)
    np.testing.assert_array_equal(scores.maps["d_lightgbm"], landcover[cut] == water.WATER_CODE)
    assert scores.metrics["f1"]["d_lightgbm"]["recall"] < 1  # the missed rows count
    assert scores.metrics["ee_dry_run"] == {"pixels": 5, "max_probability_diff": 0.0}
    assert scores.metrics["region"] == "held" and scores.metrics["label_noise"] == []
    assert scores.metrics["corrected_beats"]["d_lightgbm"] == (
        got["f1"] > scores.metrics["f1"]["d_lightgbm"]["f1"])
    assert list(scores.f1_table.index) == ["a_ndwi_otsu", "b_cnn_noisy", "c_cnn_corrected",
                                           "d_lightgbm"]
    assert scores.message.startswith(f"corrected CNN F1 {got['f1']:.4f} beats")

    no_truth = water_stage.held_out_scores({"noisy": model, "corrected": model}, arr, feats,
                                           prob, landcover, win, cfg=WaterParams(chunk=16),
                                           check=check)
    assert "f1" not in no_truth.metrics and no_truth.f1_table.empty
    assert "no truth" in no_truth.message
