"""Training: tasks, gradient estimators, the Trainer, analysis and sweeps (lazily re-exported)."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "loop": ["Trainer", "History"],
        "config": ["TrainConfig"],
        "stepping": ["Stepper"],
        "tasks": ["make_task", "TASKS"],
        "estimators": ["make_estimator", "ESTIMATORS", "GradEstimate"],
        "analysis": ["gradient_quality", "loss_curvature", "noise_robustness"],
        "curvature": ["hessian_top_eigenvalue", "hessian_trace"],
        "units": ["ScaledReadout", "init_weights", "layer_units"],
    },
)
