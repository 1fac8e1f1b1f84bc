"""lcgee: land-cover mapping from Sentinel-2, trained locally, classified in Earth Engine.

The package is a pipeline of stage modules (search, load, clouds, composite, indices, labels,
train, evaluate, predict, gee) over one :class:`~lcgee.grid.Grid` and one typed
:class:`~lcgee.params.Params`. Notebooks in ``notebooks/`` are thin layers over it, run by
``lcgee run PARAMS.yaml``.
"""

from __future__ import annotations

from lcgee.errors import LcgeeError, ParamsError
from lcgee.grid import Grid
from lcgee.params import Params, load_params
from lcgee.scenes import gee_index
from lcgee.stage import Stage, open_stage

__all__ = ["Grid", "Params", "load_params", "open_stage", "Stage", "LcgeeError", "ParamsError",
           "gee_index",
           "__version__"]

__version__ = "0.1.0"
