"""``python -m ppm_tf.serving --model_base_path=… --rest_api_port=8501``: the local server."""
import os
import sys

# TensorFlow's C++ start-up notices are noise in a server log; set before TensorFlow loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ppm_tf.serving.server import main  # noqa: E402 (after the environment is set)

sys.exit(main())
