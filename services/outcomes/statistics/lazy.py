"""scipy and statsmodels, imported on first use: together with matplotlib they made every
outcomes process (the service, each command) start about 3 s later, most of which never
computes a statistic."""

from __future__ import annotations

from types import ModuleType


def scipy_stats() -> ModuleType:
    """`scipy.stats`."""
    from scipy import stats

    return stats


def scipy_optimize() -> ModuleType:
    """`scipy.optimize`."""
    from scipy import optimize

    return optimize


def statsmodels_api() -> ModuleType:
    """The statsmodels pieces the window comparison uses, as one namespace."""
    from statsmodels.regression import mixed_linear_model
    from statsmodels.stats import multitest, power

    namespace = ModuleType("statsmodels_parts")
    namespace.MixedLM = mixed_linear_model.MixedLM  # type: ignore[attr-defined]
    namespace.multipletests = multitest.multipletests  # type: ignore[attr-defined]
    namespace.TTestIndPower = power.TTestIndPower  # type: ignore[attr-defined]
    return namespace
