"""Importing ppm_tf routes ``tf.keras`` to tf-keras, or fails with a fix when it is too late.

Each case runs in a fresh interpreter: which Keras ``tf.keras`` resolves to is decided once per
process, and the test process itself has already imported ppm_tf.
"""
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_python(code: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra_env)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_importing_ppm_tf_first_selects_tf_keras():
    result = _run_python(
        "import os\n"
        "import ppm_tf\n"
        "import tensorflow as tf\n"
        "import tensorflow_recommenders as tfrs\n"
        "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.__name__, tfrs.tasks.Ranking.__name__)")
    flag, keras_name, ranking = _last_line(result).split()
    assert flag == "1"
    assert keras_name.startswith("tf_keras")
    assert ranking == "Ranking"


def test_tensorflow_imported_first_but_keras_untouched_still_selects_tf_keras():
    result = _run_python(
        "import tensorflow as tf\n"
        "import ppm_tf\n"
        "print(tf.keras.__name__)")
    assert _last_line(result).startswith("tf_keras")


def test_keras_3_already_resolved_fails_with_the_fix():
    result = _run_python(
        "import tensorflow as tf\n"
        "tf.keras.layers\n"
        "try:\n"
        "    import ppm_tf\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
        "else:\n"
        "    print('imported')")
    message = _last_line(result)
    assert message.startswith("ImportError:")
    assert "TF_USE_LEGACY_KERAS" in message
    assert "restart the runtime" in message


def test_legacy_keras_set_before_start_allows_touching_tf_keras_first():
    result = _run_python(
        "import tensorflow as tf\n"
        "tf.keras.layers\n"
        "import ppm_tf\n"
        "print(tf.keras.__name__)",
        TF_USE_LEGACY_KERAS="1")
    assert _last_line(result).startswith("tf_keras")


def test_keras_3_imported_first_still_lets_ppm_tf_select_tf_keras():
    # Colab-like: Keras 3 is installed next to TensorFlow, and `import keras` imports
    # TensorFlow (its backend) before ppm_tf could set the variable. `tf.keras` is still
    # unresolved, and `import tensorflow.keras` (keras-cv's way in) must find tf-keras too.
    result = _run_python(
        "import keras\n"
        "import ppm_tf\n"
        "import tensorflow as tf\n"
        "import keras_cv\n"
        "import tensorflow_recommenders as tfrs\n"
        "from tensorflow.keras import layers\n"
        "standalone = keras.layers.Dense(2)\n"
        "print(keras.__version__.split('.')[0], type(standalone).__module__.split('.')[0],\n"
        "      tf.keras.layers.Dense.__module__.split('.')[0], layers.Dense.__module__.split('.')[0],\n"
        "      issubclass(keras_cv.models.ResNetBackbone, tf.keras.Model),\n"
        "      tfrs.tasks.Ranking.__name__)")
    keras_major, standalone, via_attribute, via_import, keras_cv_on_tf_keras, ranking = (
        _last_line(result).split())
    assert keras_major == "3" and standalone == "keras"
    assert via_attribute == via_import == "tf_keras"
    assert keras_cv_on_tf_keras == "True"
    assert ranking == "Ranking"


def test_keras_3_already_imported_through_tensorflow_keras_fails_with_the_fix():
    result = _run_python(
        "from tensorflow.keras import layers\n"
        "try:\n"
        "    import ppm_tf\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
        "else:\n"
        "    print('imported', layers.Dense.__module__)")
    message = _last_line(result)
    assert message.startswith("ImportError:") and "restart the runtime" in message
