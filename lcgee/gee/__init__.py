"""Earth Engine side of lcgee: export a locally trained LightGBM model as an ``ee.Classifier``.

:mod:`lcgee.gee.trees` writes LightGBM trees as Earth Engine tree strings (pure Python),
:mod:`lcgee.gee.reader` evaluates such strings independently to prove the export is exact.
Nothing here imports ``ee``; the Earth Engine session code lives in its own module.
"""
