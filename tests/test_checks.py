"""The argument checks of issue 24, called directly: fast (no model trained), so that
mutation testing can run them for every mutant. The end-to-end cases (raised by fit and
evaluate before the first step, the model unchanged) are in test_errors.py."""

import re
import warnings

import numpy as np
import pytest

import eqx_elegy as elegy
from eqx_elegy._preflight import _check_class_ids
from eqx_elegy.callbacks._callback import as_callbacks
from eqx_elegy.data._arrays import _canonical
from eqx_elegy.data._dispatch import _warn_past_the_end, is_batch_list, is_source

OUT = (32, 3)  # a batch of outputs with 3 classes
WHAT = (
    "y holds the labels of the sparse categorical crossentropy 'loss', which must be class "
    "ids: integers in [0, 3) (the output has 3 classes), but y "
)


def check(labels, output=OUT):
    _check_class_ids(np.asarray(labels), output, "y", "loss")


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 1, 2, 2], np.int32),
        np.array([0.0, 2.0], np.float32),
        np.array([[0], [2]], np.int32),  # a trailing axis of 1
        np.array([True, False]),
        np.zeros((0,), np.int32),
    ],
)
def test_valid_class_ids_pass(labels):
    check(labels)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 3, 1, 5], "is 3 or more at example 1 (3; 2 such labels)"),
        ([0, 1, -1], "is negative at example 2 (-1; 1 such labels)"),
        ([0.0, 1.5, 2.5], "is not an integer at example 1 (1.5; 2 such labels)"),
        ([0.0, np.inf], "is not finite at example 1 (inf; 1 such labels)"),
        ([[0, 1], [1, 7]], "is 3 or more at example 1 (7; 1 such labels)"),
    ],
)
def test_invalid_class_ids_are_named(labels, message):
    with pytest.raises(ValueError, match=re.escape(WHAT + message + ". Fix or drop")):
        check(np.asarray(labels, np.float32 if isinstance(labels[0], float) else np.int32))
    with pytest.raises(ValueError, match=re.escape("a loss of 0.") + "$"):
        check(np.asarray(labels, np.float32 if isinstance(labels[0], float) else np.int32))


def test_one_hot_labels_are_named():
    message = (
        WHAT + "has shape [4, 3], the shape of the output: it looks one-hot. Pass "
        "y.argmax(-1), or use CategoricalCrossentropy."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check(np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    with pytest.raises(ValueError, match=r"\(the output has 2 classes\), but y has shape \[4, 2\]"):
        check(np.eye(2, dtype=np.float32)[[0, 1, 1, 0]], (32, 2))
    # Outputs with more axes: the classes are on the last one.
    with pytest.raises(ValueError, match=r"y has shape \[4, 5, 3\], the shape of the output"):
        check(np.zeros((4, 5, 3), np.float32), (32, 5, 3))
    with pytest.raises(ValueError, match=r"in \[0, 3\) .* y is 3 or more at example 2"):
        check(np.array([[0] * 5, [2] * 5, [0, 0, 0, 0, 3]]), (32, 5, 3))
    check(np.full((4, 5), 2), (32, 5, 3))
    check(np.zeros((4, 1), np.int32), (32, 1))  # one class: a single column is not one-hot
    check(np.zeros((4, 3), np.int32), (32,))  # no class axis: the loss says so itself


def test_the_class_axis_and_ignore_class_follow_the_loss():
    check_axis = dict(output=(32, 3, 5), name="y", loss="loss", axis=1)
    _check_class_ids(np.array([[0, 2, 1, 2, 0]]), **check_axis)
    with pytest.raises(ValueError, match=re.escape(WHAT + "is 3 or more at example 0 (4;")):
        _check_class_ids(np.array([[0, 4, 1, 2, 0]]), **check_axis)
    with pytest.raises(ValueError, match=re.escape(WHAT + "has shape [4, 3, 5], the shape")):
        _check_class_ids(np.zeros((4, 3, 5)), **check_axis)
    # Labels equal to ignore_class are skipped, as the loss skips them.
    _check_class_ids(np.array([0, 255, 2]), OUT, "y", "loss", ignore_class=255)
    with pytest.raises(ValueError, match=re.escape(WHAT + "is negative at example 3 (-1;")):
        _check_class_ids(np.array([0, 255, 2, -1]), OUT, "y", "loss", ignore_class=255)
    _check_class_ids(np.zeros(4), (32, 3), "y", "loss", axis=2)  # no such axis: not checked


def test_labels_of_another_kind_are_refused():
    with pytest.raises(ValueError, match=re.escape(WHAT + "has dtype complex64.")):
        check(np.zeros(4, np.complex64))


def test_narrowed_integers_must_fit():
    info = np.iinfo(np.int32)
    for value in (info.max + 1, info.min - 1):
        with pytest.raises(ValueError, match=rf"y holds the integer {value}, which does not fit"):
            _canonical(np.array([0, value], np.int64), "y")
    with pytest.raises(
        ValueError, match=rf"the integer {info.max + 1}, .* \[{info.min}, {info.max}\]\.$"
    ):
        _canonical(np.array([info.min, info.max + 1], np.int64), "y")
    for value in (info.max, info.min):
        assert _canonical(np.array([value], np.int64), "y")[0] == value
    assert _canonical(np.zeros(0, np.int64), "y").dtype == np.int32


def test_lists_of_numbers_are_refused_but_lists_of_arrays_are_inputs():
    with pytest.raises(TypeError, match=re.escape("x is a Python list of numbers (x[1] is 2.0)")):
        _canonical([np.zeros(2), 2.0], "x")
    with pytest.raises(TypeError, match=re.escape("(x[0][1] is 3)")):
        _canonical([[np.zeros(1), 3]], "x")
    with pytest.raises(TypeError, match=re.escape("(x[0] is np.int64(1))")):
        _canonical([np.int64(1)], "x")
    inputs = _canonical({"a": np.zeros(2), "b": [np.ones(2)]}, "x")
    assert inputs["b"][0].tolist() == [1.0, 1.0]


def test_callbacks_argument():
    stop = elegy.callbacks.TerminateOnNaN()
    history = elegy.callbacks.History()
    assert as_callbacks(None) == [] and as_callbacks([]) == []
    assert as_callbacks(stop) == [stop]
    assert as_callbacks((stop, [history, (stop,)])) == [stop, history, stop]
    with pytest.raises(TypeError, match=r"^callbacks\[1\] is the class History, not a callback"):
        as_callbacks([stop, elegy.callbacks.History])
    with pytest.raises(TypeError, match=r"^callbacks is int 3, not an elegy.callbacks.Callback"):
        as_callbacks(3)
    with pytest.raises(TypeError, match=r"^callbacks\[0\] is str '" + "a" * 72 + r"\.\.\., not"):
        as_callbacks(["a" * 100])
    with pytest.raises(TypeError, match=r"^callbacks\[0\] is str '" + "b" * 74 + "', not"):
        as_callbacks(["b" * 74])  # 80 characters: shown whole
    message = (
        "callbacks[0] is str 'short', not an elegy.callbacks.Callback: pass a list of "
        "callbacks, e.g. callbacks=[EarlyStopping()]; to call a function, wrap it in "
        "LambdaCallback (e.g. LambdaCallback(on_epoch_end=fn))."
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        as_callbacks(["short"])


def test_a_list_of_batches():
    batch = (np.zeros((2, 3)), np.zeros(2))
    assert is_batch_list([batch, (*batch, np.ones(2))])
    assert not is_batch_list([]) and not is_batch_list((batch,))
    assert not is_batch_list([batch, np.zeros(2)])
    assert not is_batch_list([(np.zeros(2),)]) and not is_batch_list([(*batch, batch[1], 1)])
    assert not is_batch_list([list(batch)])  # a list of lists is a pytree of inputs
    assert is_source([batch]) and not is_source([batch], np.zeros(1))
    assert not is_source([batch], None, np.zeros(1))
    assert not is_source(np.zeros(3)) and not is_source({"a": np.zeros(3)})
    assert is_source(iter([batch])) and is_source(elegy.data.ArrayAdapter(*batch))


def test_array_arguments_name_themselves():
    with pytest.raises(TypeError, match=r"^y must be an array or a pytree of arrays, got a string"):
        _canonical("labels", "y")

    class Opaque:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("no array")

    with pytest.raises(
        TypeError, match=r"^y must .* type Opaque could not be converted \(no array"
    ):
        _canonical([Opaque()], "y")
    with pytest.raises(ValueError, match=r"^y must have a leading batch dimension; got a scalar"):
        _canonical(np.float32(1), "y")


def test_steps_past_the_end_warn():
    with pytest.warns(UserWarning, match=r"^steps=9 is more than the 8 batches of x \(why\)\."):
        _warn_past_the_end(9, 8, "why", "steps", "x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_past_the_end(8, 8, "why", "steps", "x")
        _warn_past_the_end(None, 8, "why", "steps", "x")
