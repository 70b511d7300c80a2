"""The demo's side process: a function in a spawned interpreter, its value or its exception
back in this one, and a stop that leaves no process behind."""
import math
import multiprocessing
import operator
import time

import pytest

from ppm_tf.demo.side_process import SideProcess


def test_the_function_runs_in_another_process_and_its_value_comes_back():
    assert SideProcess(operator.add, 2, 3).result() == 5
    assert not multiprocessing.active_children()


def test_the_functions_exception_is_raised_here():
    with pytest.raises(ValueError, match="math domain error"):
        SideProcess(math.sqrt, -1.0).result()
    assert not multiprocessing.active_children()


def test_stop_ends_a_process_that_is_still_working():
    side = SideProcess(time.sleep, 600)
    assert multiprocessing.active_children()
    side.stop()
    assert not multiprocessing.active_children()


def test_a_failure_in_this_process_ends_the_side_process():
    with pytest.raises(RuntimeError, match="the main process failed"):
        with SideProcess(time.sleep, 600):
            assert multiprocessing.active_children()
            raise RuntimeError("the main process failed")
    assert not multiprocessing.active_children()


def test_leaving_the_block_normally_keeps_the_value():
    with SideProcess(operator.add, 2, 3) as side:
        assert side.result() == 5
    assert not multiprocessing.active_children()
