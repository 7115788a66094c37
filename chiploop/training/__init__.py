"""Training: tasks, gradient estimators, the Trainer, analysis and sweeps (lazily re-exported)."""

from importlib import import_module

_EXPORTS = {
    "Trainer": "chiploop.training.loop",
    "History": "chiploop.training.loop",
    "make_task": "chiploop.training.tasks",
    "TASKS": "chiploop.training.tasks",
    "make_estimator": "chiploop.training.estimators",
    "ESTIMATORS": "chiploop.training.estimators",
    "GradEstimate": "chiploop.training.estimators",
    "gradient_quality": "chiploop.training.analysis",
    "loss_curvature": "chiploop.training.analysis",
    "noise_robustness": "chiploop.training.analysis",
    "hessian_top_eigenvalue": "chiploop.training.curvature",
    "hessian_trace": "chiploop.training.curvature",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'chiploop.training' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
