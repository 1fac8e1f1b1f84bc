"""The water CNN of :mod:`lcgee.water` as an Earth Engine graph (neighbourhood arrays + matrices).

Mapping (decision record 0012): the seed rewrote every 3 x 3 convolution as one
``ee.Kernel.fixed`` + ``convolve`` per (input band, output channel) pair, summed: 16 x 32 +
(32 + C) x 64 + ... = about 3,200 convolutions. lcgee instead turns each 3 x 3 layer into

    h.neighborhoodToArray(Kernel.square(1 px), defaultValue=0)   # C_in bands, 3 x 3 arrays
     .arrayReshape([9], 1).toArray(0).toArray(1)                 # one (9 C_in, 1) matrix
    W (C_out, 9 C_in) . that  + b, max(0), arrayProject([0]).arrayFlatten  # C_out bands

so a layer is ~10 nodes whatever its width, and the weights travel once, as ``ee.Array``
constants (about 38,500 numbers for C = 8). The 1 x 1 layers are two more matrix products on
``toArray`` of the concatenated bands. Orientation follows the documentation of
``neighborhoodToArray``: axis 0 of each array is the image's Y axis (rows, top first), axis 1
its X axis; weight column ``i * 9 + dy * 3 + dx`` takes band ``i`` at row offset ``dy - 1`` and
column offset ``dx - 1``, which is the framework's cross-correlation (no kernel flip). The
flattening order of ``arrayReshape`` is taken to be row-major (lcgee's reading; see
``docs/earth-engine-semantics-water.md``). Masked neighbours become 0 (``defaultValue``), which
the local predictor mirrors.

Outputs: band ``water_probability`` (float) and ``water`` (uint8, 1 where the water logit is
larger). The payload (weights inline) is measured by :func:`payload_bytes`; models too large for
one request would go through :func:`lcgee.gee.classify.payload_route`'s logic — this network's
~0.8 MB always fits inline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from lcgee.errors import ModelError
from lcgee.gee import classify
from lcgee.gee.api import ee as _ee
from lcgee.gee.classify import INLINE_FRACTION, REQUEST_LIMIT_BYTES
from lcgee.water import WaterModel

__all__ = ["water_image", "water_graph", "payload_bytes", "conv_matrix", "PROBABILITY_BAND",
           "CLASS_BAND"]

PROBABILITY_BAND = "water_probability"
CLASS_BAND = "water"



def conv_matrix(kernel: np.ndarray) -> np.ndarray:
    """HWIO kernel ``(3, 3, C_in, C_out)`` -> matrix ``(C_out, 9 C_in)``, column ``i*9 + dy*3 + dx``."""
    k = np.asarray(kernel, np.float64)
    return np.transpose(k, (3, 2, 0, 1)).reshape(k.shape[3], -1)


def _array(values: np.ndarray) -> Any:
    ee = _ee()
    return ee.Image(ee.Array(np.asarray(values, np.float64).tolist()))


def _dense(vector_image: Any, w: np.ndarray, b: np.ndarray, relu: bool) -> Any:
    """``W^T v + b`` on a ``(n, 1)`` array image; ``w`` is ``(n_in, n_out)``."""
    out = _array(np.asarray(w).T).matrixMultiply(vector_image).add(_array(np.asarray(b)[:, None]))
    return out.max(_array(np.zeros((len(b), 1)))) if relu else out


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}_{i}" for i in range(n)]


def _conv3(image: Any, kernel: np.ndarray, bias: np.ndarray, prefix: str) -> Any:
    ee = _ee()
    arrays = image.neighborhoodToArray(kernel=ee.Kernel.square(radius=1, units="pixels"),
                                       defaultValue=0)
    vector = arrays.arrayReshape(_array(np.array([9])), 1).toArray(0).toArray(1)
    out = _array(conv_matrix(kernel)).matrixMultiply(vector).add(_array(np.asarray(bias)[:, None]))
    out = out.max(_array(np.zeros((len(bias), 1))))
    return out.arrayProject([0]).arrayFlatten([_names(prefix, len(bias))])


def water_image(model: WaterModel, composite_image: Any | None = None, *,
                available_bands: Sequence[str] | None = None) -> Any:
    """The water image (``water_probability``, ``water``) of a reflectance composite.

    ``composite_image`` defaults to :func:`lcgee.gee.classify.placeholder_composite`; indices
    among ``model.bands`` are computed by :func:`lcgee.gee.classify.feature_image` from the same
    definitions as the local features.
    """
    ee = _ee()
    comp = composite_image if composite_image is not None else classify.placeholder_composite()
    feats = classify.feature_image(comp, model.bands, available_bands=available_bands)
    x = feats.subtract(ee.Image.constant([float(v) for v in model.mean])).divide(
        ee.Image.constant([float(v) for v in model.std]))
    w = model.weights
    h = _conv3(x, w["w1"], w["b1"], "h1")
    h = _conv3(h, w["w2"], w["b2"], "h2")
    h = _conv3(h.addBands(x), w["w3"], w["b3"], "h3")
    v = h.addBands(x).toArray().toArray(1)
    v = _dense(v, w["w4"], w["b4"], relu=True)
    logits = _dense(v, w["w5"], w["b5"], relu=False).arrayProject([0]).arrayFlatten(
        [["not_water", "water"]])
    one = ee.Image.constant(1)
    prob = one.divide(one.add(logits.select("not_water").subtract(logits.select("water")).exp()))
    label = logits.select("water").gt(logits.select("not_water")).toUint8()
    return prob.rename(PROBABILITY_BAND).addBands(label.rename(CLASS_BAND))


def water_graph(model: WaterModel, composite_image: Any | None = None) -> dict[str, Any]:
    """The serialized request (``values`` + ``result``) of :func:`water_image`.

    The weights travel inline; a request over the inline share of Earth Engine's 10 MB limit
    (only with hundreds of input bands, more than Earth Engine classifies) is refused.
    """
    graph = json.loads(water_image(model, composite_image).serialize())
    size = payload_bytes(graph)
    if size > INLINE_FRACTION * REQUEST_LIMIT_BYTES:
        raise ModelError(f"the water graph is {size / 1e6:.1f} MB, too large for one request",
                         where="gee.water.water_graph", fix="use fewer water.bands")
    return graph


def payload_bytes(graph: dict[str, Any]) -> int:
    """Size of the serialized request in bytes (one request may carry 10 MB)."""
    return len(json.dumps(graph).encode())
