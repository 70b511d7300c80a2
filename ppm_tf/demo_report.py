"""Deprecated: ``python -m ppm_tf.demo_report OUT`` is now ``python -m ppm_tf.demo.report OUT``
(kept for one release)."""
import sys
import warnings

from ppm_tf.demo.report import main

if __name__ == "__main__":
    warnings.warn("`python -m ppm_tf.demo_report` is deprecated; use "
                  "`python -m ppm_tf.demo.report`", DeprecationWarning, stacklevel=1)
    main(sys.argv[1])
