"""Serving: a local TensorFlow-Serving-compatible server and clients for TF Serving's APIs.

Production serves with the official TensorFlow Serving (``serving/`` holds its configs); this
package is the same API for development and tests, and the clients for both:

- ``server.main(argv)`` / ``python -m ppm_tf.serving``: ``tensorflow_model_server``'s flags;
  ``server.ModelServer(server.ServerOptions(...))`` for use from Python.
- ``model_manager.ModelManager``: loads versions per a version policy, polls for new ones and
  swaps them in without failing requests.
- ``rest.RestApi`` / ``grpc_service``: the ``/v1/models`` REST API and the gRPC
  ``PredictionService``/``ModelService``.
- ``client.RestClient`` / ``client.GrpcClient``: clients written against TF Serving's public
  API, so they work with either server; ``predict_candidates`` sends one user's request in
  the form TF Serving's batching accepts (every input one row per candidate).
- ``deployment.production_options``: ``serving/docker-compose.yml``'s flags and configs on host
  paths, so local runs (the demo, the tests) serve as production does.

Submodules import TensorFlow; import ``ppm_tf`` first (it selects tf-keras).
"""
