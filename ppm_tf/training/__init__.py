"""Training: PPM pre-training on the long span, and the ablation models on the recent window."""
