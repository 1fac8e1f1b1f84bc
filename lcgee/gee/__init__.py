"""Earth Engine side of lcgee: graphs that do on the server what the stages do locally.

A strict lower layer: nothing here knows a run (params, STAC searches, the run directory). The
run-level glue (the demo's stand-in over the STAC API, options of the ``gee`` cloud source, the
composite from params, the dry run) lives above it, in :mod:`lcgee.ee_stage`.

Graph code (pure: builds or reads graphs, evaluates them on local arrays, sends nothing):

* :mod:`lcgee.gee.trees` writes LightGBM trees as Earth Engine tree strings,
  :mod:`lcgee.gee.reader` reads them back independently;
* :mod:`lcgee.gee.classify`, :mod:`lcgee.gee.cloudmask`, :mod:`lcgee.gee.composite`,
  :mod:`lcgee.gee.chain`, :mod:`lcgee.gee.water` build ``ee.Image`` graphs;
* :mod:`lcgee.gee.offline` (with :mod:`~lcgee.gee.offline_ops` and
  :mod:`~lcgee.gee.offline_arrays`) evaluates serialized graphs on NumPy arrays;
  :mod:`lcgee.gee.verify` compares them with the local results.

Service code (talks to Earth Engine, or to a stand-in answering the same requests):

* :mod:`lcgee.gee.api` is the only module that imports ``ee`` (earthengine-api);
* :mod:`lcgee.gee.session` (offline / live sessions), :mod:`lcgee.gee.retry`,
  :mod:`lcgee.gee.download` (tiled ``computePixels``), :mod:`lcgee.gee.worldcover`,
  :mod:`lcgee.gee.live` (classification, assets, export tasks) and
  :mod:`lcgee.gee.emulator` (the offline stand-in for ``computePixels`` / ``getInfo``).

Import rule (checked by tests/unit/test_layering.py): modules here import each other and, of the
rest of lcgee, only ``lcgee.errors``, ``lcgee.files``, ``lcgee.grid``, ``lcgee.indices`` (the
index definitions), ``lcgee.clouds`` (mask codes and parameter checks), ``lcgee.scenes`` (an
item's Earth Engine ``system:index``), ``lcgee.water`` (the water network's weights) and
``lcgee.composite`` (the feature names of composite periods); each
of those imports only ``lcgee.errors`` / ``lcgee.files``. Never a stage module.
"""
