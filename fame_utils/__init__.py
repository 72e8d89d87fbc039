"""fame-workbook helper package: FAME, its rivals, metrics, benchmarks and plotting for the notebooks.

Layers, lowest first (a module imports only from its own layer or lower ones; see README "How the code is organised"):
``_checks`` / ``runtime`` / ``layers`` → ``models`` / ``data`` → ``fame`` → ``metrics`` → ``locality`` →
``baselines`` → ``evaluation`` → ``viz`` → ``workbook`` (what only the notebooks need).
"""

__version__ = "0.1.0"
