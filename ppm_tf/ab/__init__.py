"""The paper's online A/B test, replayed: every arm ranks the same eval-day requests of a
synthetic world through the served models, and the world's true probabilities score what each
arm shows (``ppm ab``; ``experiment.run_ab``)."""

# Arms the tool scores itself: the world's own click probabilities (the ceiling), logged clicks
# on earlier days (ignores the user), and chance.
BUILT_IN_ARMS = ("oracle", "popularity", "random")
DEFAULT_ARMS = ("urm", "base", *BUILT_IN_ARMS)
# Requests in flight at once, as a front end's workers send them (the server batches them).
CLIENTS = 2
