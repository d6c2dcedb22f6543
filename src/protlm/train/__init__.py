"""Training: one visible loop for pre-training and fine-tuning, checkpoints, metrics."""
