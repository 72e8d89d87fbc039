"""The errors a protocol run or report raises for problems the user can fix (each message says what to do).

Plain exception classes; they know nothing of where they are raised.
"""

from __future__ import annotations

__all__ = ["IncompleteStoreError", "ProtocolInputError", "StoreMismatchError"]


class ProtocolInputError(ValueError):
    """Bad input found before any work: unknown protocol or method, missing dataset, unknown image ids, no weights."""


class StoreMismatchError(ValueError):
    """The output folder holds results of a run with other settings (protocol, network, items or configuration)."""


class IncompleteStoreError(RuntimeError):
    """The report needs items that are missing or damaged in the store."""
