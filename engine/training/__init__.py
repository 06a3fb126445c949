"""The training loop and its state: settings (`args`), the compiled step, schedules, checkpoints,
data-parallel world, and `run` (one training run from settings to a checked output folder)."""
