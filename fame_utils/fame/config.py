"""FAME's hyperparameters in one frozen, validated record, and the two modes (corrected default, paper-faithful).

Holds settings only; it knows nothing of models, losses or maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["FameConfig", "NORMALIZATIONS", "PRECISIONS", "MEMORY_FORMATS", "PAPER_CLASS_EPSILON"]

NORMALIZATIONS = ("minmax", "max")
PRECISIONS = ("fp32", "bf16", "fp16")
MEMORY_FORMATS = ("channels_last", "nchw")
PAPER_CLASS_EPSILON = 1e-3
"""Early-stop threshold on |z_o| used by the authors' original classification script (docs/decisions.md#paper-faithful)."""


@dataclass(frozen=True)
class FameConfig:
    """FAME hyperparameters (defaults = the paper's: η = 1/255, T = 500, blur 49/7.7, no clamp).

    Args:
        step_size: η, the L∞ length of one step (in the units of the perturbed tensor).
        iterations: T, the maximum number of steps.
        epsilon: early-stop threshold ε on the loss (None = never stop early).
        clamp: ``(low, high)`` to clip x̄ after each step, or None.
        blur_kernel: Gaussian kernel size b (an even size is raised to the next odd number); None = no blur.
        blur_sigma: Gaussian σ.
        normalization: ``"minmax"`` (default; the reference code and the original scripts) or ``"max"`` (the
            paper's text); its own knob, independent of ``paper_faithful`` (docs/decisions.md#normalisation).
        paper_faithful: reproduce the original scripts (docs/decisions.md#paper-faithful): |z_o| with ε = 1e-3 for
            classification when ``epsilon`` is None, batch-mean early stopping (callers run one image per batch,
            as the scripts did).
            Read the effective values from :attr:`effective_normalization`, :attr:`early_stop_rule`
            and :meth:`class_epsilon`, or all at once from :meth:`effective_settings`.
        precision: ``"fp32"`` (default), or opt-in autocast of the forward/backward passes: ``"bf16"`` (CPU or CUDA)
            or ``"fp16"`` (CUDA only). The LOTS update and the accumulated x̄ stay fp32 either way. Measured with
            ``benchmarks/fame_speed.py`` (2-core CPU): bf16 maps have Spearman 0.989 (Lite0 class) and 0.995 (Lite0
            locations) to fp32 after 5 iterations, 0.974–0.979 after 500 iterations, at 1.2–1.3× the fp32 speed.
        memory_format: layout of the perturbed tensor during the run: ``"channels_last"`` (default; 1.5× faster per
            step than NCHW on EfficientNet-Lite0 on CPU) or ``"nchw"``. It changes only floating-point rounding, never
            the method: Lite0 class maps have Spearman ≥ 0.9995 to NCHW after 5 steps, 0.977–0.994 after 100 — the
            spread any rounding change gives there (one photo per batch instead of four: 0.982–0.994).
    """

    step_size: float = 1 / 255
    iterations: int = 500
    epsilon: float | None = None
    clamp: tuple[float, float] | None = None
    blur_kernel: int | None = 49
    blur_sigma: float = 7.7
    normalization: str = "minmax"
    paper_faithful: bool = False
    precision: str = "fp32"
    memory_format: str = "channels_last"

    def __post_init__(self) -> None:
        if not (isinstance(self.step_size, (int, float)) and math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"FameConfig.step_size must be a positive finite number, got {self.step_size!r}.")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"FameConfig.iterations must be an int >= 0, got {self.iterations!r}.")
        if self.epsilon is not None and not (isinstance(self.epsilon, (int, float)) and math.isfinite(self.epsilon)):
            raise ValueError(f"FameConfig.epsilon must be None or a finite number, got {self.epsilon!r}.")
        if self.clamp is not None:
            if len(self.clamp) != 2 or not self.clamp[0] < self.clamp[1]:
                raise ValueError(f"FameConfig.clamp must be None or (low, high) with low < high, got {self.clamp!r}.")
            object.__setattr__(self, "clamp", (float(self.clamp[0]), float(self.clamp[1])))
        if self.blur_kernel is not None:
            if isinstance(self.blur_kernel, bool) or not isinstance(self.blur_kernel, int) or self.blur_kernel < 1:
                raise ValueError(f"FameConfig.blur_kernel must be None or a positive int, got {self.blur_kernel!r}.")
            object.__setattr__(self, "blur_kernel", self.blur_kernel | 1)
        if not (isinstance(self.blur_sigma, (int, float)) and math.isfinite(self.blur_sigma) and self.blur_sigma > 0):
            raise ValueError(f"FameConfig.blur_sigma must be a positive number, got {self.blur_sigma!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"FameConfig.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"FameConfig.precision must be one of {PRECISIONS}, got {self.precision!r}.")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"FameConfig.memory_format must be one of {MEMORY_FORMATS}, got {self.memory_format!r}.")

    @property
    def effective_normalization(self) -> str:
        """The normalisation actually applied: :attr:`normalization` (``paper_faithful`` does not change it)."""
        return self.normalization

    @property
    def early_stop_rule(self) -> str:
        """``"batch-mean"`` (one mean over the batch stops all samples) under ``paper_faithful``, else ``"per-sample"``."""
        return "batch-mean" if self.paper_faithful else "per-sample"

    def class_epsilon(self) -> float | None:
        """ε used by the classification loss: :attr:`epsilon`, or 1e-3 under ``paper_faithful`` when unset."""
        if self.epsilon is None and self.paper_faithful:
            return PAPER_CLASS_EPSILON
        return self.epsilon

    def effective_settings(self) -> dict[str, object]:
        """Every setting as it is applied, for side-by-side tables of the two modes."""
        return {
            "step_size": self.step_size,
            "iterations": self.iterations,
            "epsilon": self.epsilon,
            "class_epsilon": self.class_epsilon(),
            "class_loss": "|z_o|" if self.paper_faithful else "z_o",
            "early_stop_rule": self.early_stop_rule,
            "clamp": self.clamp,
            "blur_kernel": self.blur_kernel,
            "blur_sigma": self.blur_sigma,
            "normalization": self.effective_normalization,
            "paper_faithful": self.paper_faithful,
            "precision": self.precision,
            "memory_format": self.memory_format,
        }

    def replace(self, **changes: object) -> "FameConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
