"""Training: losses, minibatches, optimiser schedules, checkpoints and resumption."""
