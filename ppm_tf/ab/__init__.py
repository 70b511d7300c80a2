"""The paper's online A/B test, replayed: every arm ranks the same eval-day requests of a
synthetic world through the served models, and the world's true probabilities score what each
arm shows (``ppm ab``; ``experiment.run_ab``)."""
