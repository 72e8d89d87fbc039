"""fame-workbook helper package: FAME, its rivals, models, data, metrics and plotting for the notebooks.

Submodules (one concept each): ``fame`` (the method), ``models``, ``data``, ``baselines``, ``metrics``,
``locality``, ``viz``, ``widgets``, ``layers`` (hooks), ``runtime`` (device, seeds), ``session``
(figures, recorded numbers, manifest) and ``run`` (the papermill runner).
"""

__version__ = "0.1.0"
