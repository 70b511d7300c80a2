"""PPM-TF: the Pre-trained Plug-in Model for CTR prediction (arXiv 2403.10049) on tf-keras.

Importing this package selects tf-keras (Keras 2) for ``tf.keras`` by setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow resolves its Keras: tensorflow-recommenders
refuses Keras 3, and Keras 3 and tf-keras objects cannot share one model.
"""
import os
import sys

__version__ = "0.1.0"

_KERAS_3_ALREADY_LOADED = (
    "ppm_tf needs tf-keras (Keras 2), but TensorFlow was already imported and `tf.keras` "
    "resolved to Keras 3. Fix: set the environment variable TF_USE_LEGACY_KERAS=1 before "
    "starting Python (in a shell: `export TF_USE_LEGACY_KERAS=1`; in Colab: "
    "`import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'` in the first cell), or import "
    "ppm_tf before tensorflow. In Colab or Jupyter, restart the runtime first."
)


def _select_legacy_keras() -> None:
    """Routes ``tf.keras`` to tf-keras, or fails if TensorFlow already chose Keras 3."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None:
        return
    # TensorFlow reads the variable lazily, on the first access to `tf.keras`, and then
    # replaces its loader with the chosen module; only a Keras 3 choice is too late to fix.
    # `vars()` looks without touching the loader, which would resolve it.
    keras_entry = vars(tensorflow).get("keras")
    if keras_entry is None:
        return
    state = vars(keras_entry)
    if "_tfll_initialized" in state:  # still the lazy loader
        chose_keras_3 = state["_tfll_initialized"] and state.get("_tfll_keras_version") == "keras_3"
    else:  # the resolved module: tf_keras.api._v2.keras or keras._tf_keras.keras
        chose_keras_3 = not state.get("__name__", "").startswith("tf_keras")
    if chose_keras_3:
        raise ImportError(_KERAS_3_ALREADY_LOADED)


_select_legacy_keras()
