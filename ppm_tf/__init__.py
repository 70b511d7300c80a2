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


# The names through which TensorFlow hands out its Keras: each a lazy loader that reads
# TF_USE_LEGACY_KERAS on first use, then is replaced by the module it chose.
_TF_KERAS_ENTRY_POINTS = ("keras", "losses", "metrics", "optimizers", "initializers")


def _is_tf_keras(module) -> bool:
    file_parts = os.path.normpath(getattr(module, "__file__", None) or "").split(os.sep)
    return getattr(module, "__name__", "").startswith("tf_keras") or "tf_keras" in file_parts


def _chose_keras_3(tensorflow) -> bool:
    """Whether any way into ``tf.keras`` already resolved to Keras 3 in this process."""
    for name in _TF_KERAS_ENTRY_POINTS:
        # `vars()` looks without touching a lazy loader, which would resolve it.
        entry = vars(tensorflow).get(name)
        if entry is None:
            continue
        state = vars(entry)
        if "_tfll_initialized" in state:  # still the lazy loader
            if state["_tfll_initialized"] and state.get("_tfll_keras_version") == "keras_3":
                return True
        elif not _is_tf_keras(entry):  # the module it resolved to
            return True
    # `import tensorflow.keras` / `from tensorflow.keras import ...` already ran.
    return any(not _is_tf_keras(module) for name, module in list(sys.modules.items())
               if module is not None and name.split(".")[:2] == ["tensorflow", "keras"])


def _route_keras_submodule_imports(tensorflow) -> None:
    """``import tensorflow.keras`` (keras-cv does it) searches ``tensorflow.__path__``, which
    TensorFlow fixes at its own import: to Keras 3's folder when the variable was not set
    yet. Put tf-keras's folder first, as TensorFlow does when it is set."""
    import importlib.util

    tf_keras_spec = importlib.util.find_spec("tf_keras")
    if tf_keras_spec is None or not tf_keras_spec.origin:
        raise ImportError("ppm_tf needs the tf-keras package (pip install tf-keras); "
                          "it is one of ppm-tf's dependencies")
    api_dir = os.path.join(os.path.dirname(tf_keras_spec.origin), "api", "_v2")
    if tensorflow.__path__[0] != api_dir:
        tensorflow.__path__.insert(0, api_dir)


def _select_legacy_keras() -> None:
    """Routes ``tf.keras`` to tf-keras, or fails if TensorFlow already chose Keras 3."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None:
        return
    # Imported already (by `import tensorflow`, or by `import keras`, Keras 3's backend):
    # its lazy loaders read the variable on first use, so only a Keras 3 choice made since
    # is too late to fix.
    if _chose_keras_3(tensorflow):
        raise ImportError(_KERAS_3_ALREADY_LOADED)
    _route_keras_submodule_imports(tensorflow)


_select_legacy_keras()
