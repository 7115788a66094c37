"""The one set of training defaults, shared by `chiploop train` and `Trainer` (imports nothing heavy)."""

PROFILE = "loihi2"
TASK = "digits"
ESTIMATOR = "bptt"
MODE = "in_the_loop"
TARGET = "emulator"
OPTIMIZER = "adam"
EPOCHS = 6
LR = 0.02  # weight units per step (see `layer_units`)
LR_DECAY = 0.7  # learning-rate factor per epoch
BATCH_SIZE = 64
HIDDEN = 128
SEED = 0
RUNS_ROOT = "runs"
