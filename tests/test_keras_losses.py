"""Every loss of Keras 3 against Keras itself: the same numbers on the same inputs (every
reduction, with and without sample weights), Keras' string names, Keras' shape rules,
clear errors for bad arguments, and one small `fit` per family through `Model(loss=...)`.

Keras runs on its JAX backend; it is a test-only dependency (the `test` extra).
"""

import inspect
import os

os.environ["KERAS_BACKEND"] = "jax"

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from keras.src.losses import ALL_OBJECTS_DICT as KERAS_LOSS_NAMES  # noqa: E402
from keras.src.trainers.compile_utils import get_loss as keras_compile_loss  # noqa: E402

import eqx_elegy as elegy  # noqa: E402
from eqx_elegy import losses  # noqa: E402
from eqx_elegy._losses_and_metrics import LossesAndMetrics  # noqa: E402
from eqx_elegy.losses._loss import snake_case  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6
B, C = 6, 4
rng = np.random.default_rng(0)


def f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


LOGITS = f32(rng.normal(size=(B, C)) * 2)
PROBS = f32(jax.nn.softmax(LOGITS))
OTHER_PROBS = f32(jax.nn.softmax(f32(rng.normal(size=(B, C)))))
IDS = np.array([0, 1, 2, 3, 1, 2])
ONE_HOT = np.eye(C, dtype=np.float32)[IDS]
BINARY = f32(rng.integers(0, 2, size=(B, C)))
SIGNS = 2 * BINARY - 1
SIGMOID = f32(jax.nn.sigmoid(LOGITS))
REAL_TRUE = f32(rng.normal(size=(B, C)))
REAL_PRED = f32(rng.normal(size=(B, C)) * 1.5)
POS_TRUE = f32(rng.uniform(0.1, 3.0, size=(B, C)))
POS_PRED = f32(rng.uniform(0.1, 3.0, size=(B, C)))
MASK_TRUE = f32(rng.integers(0, 2, size=(B, 3, 3, 1)))
MASK_PRED = f32(rng.uniform(size=(B, 3, 3, 1)))
# Labels 2 and 3 occur once: those embeddings have no positive pair, so Circle leaves
# them out of the mean.
CIRCLE_LABELS = np.array([0, 0, 1, 1, 2, 3])
EMBEDDINGS = f32(rng.normal(size=(B, 5)))
EMBEDDINGS /= np.linalg.norm(EMBEDDINGS, axis=1, keepdims=True)
CTC_LABELS = np.array([[1, 2, 0], [3, 0, 0], [1, 1, 2], [2, 0, 0], [3, 2, 1], [1, 0, 0]])
CTC_LOGITS = f32(rng.normal(size=(B, 7, C)))
SEQ_TRUE = f32(rng.normal(size=(B, 3, 2)))
SEQ_PRED = f32(rng.normal(size=(B, 3, 2)))
WEIGHTS = f32(rng.uniform(0.0, 2.0, size=B))

# id -> (class name, constructor kwargs, y_true, y_pred); the same kwargs build the
# Keras loss. Every Keras loss class appears at least once (checked below).
CASES = {
    "bce": ("BinaryCrossentropy", {}, BINARY, SIGMOID),
    "bce_logits_smoothing": (
        "BinaryCrossentropy",
        dict(from_logits=True, label_smoothing=0.1),
        BINARY,
        LOGITS,
    ),
    "binary_focal": ("BinaryFocalCrossentropy", {}, BINARY, SIGMOID),
    "binary_focal_options": (
        "BinaryFocalCrossentropy",
        dict(
            apply_class_balancing=True, alpha=0.3, gamma=1.5, from_logits=True, label_smoothing=0.1
        ),
        BINARY,
        LOGITS,
    ),
    "cce": ("CategoricalCrossentropy", {}, ONE_HOT, PROBS),
    "cce_logits_smoothing": (
        "CategoricalCrossentropy",
        dict(from_logits=True, label_smoothing=0.2),
        ONE_HOT,
        LOGITS,
    ),
    "categorical_focal": ("CategoricalFocalCrossentropy", {}, ONE_HOT, PROBS),
    "categorical_focal_options": (
        "CategoricalFocalCrossentropy",
        dict(alpha=0.4, gamma=1.0, from_logits=True, label_smoothing=0.2),
        ONE_HOT,
        LOGITS,
    ),
    "categorical_focal_alpha_per_class": (
        "CategoricalFocalCrossentropy",
        dict(alpha=[0.1, 0.2, 0.3, 0.4]),
        ONE_HOT,
        PROBS,
    ),
    "generalized_ce": ("CategoricalGeneralizedCrossEntropy", {}, IDS, PROBS),
    "generalized_ce_q": ("CategoricalGeneralizedCrossEntropy", dict(q=0.2), IDS, PROBS),
    "categorical_hinge": ("CategoricalHinge", {}, ONE_HOT, REAL_PRED),
    "circle": ("Circle", {}, CIRCLE_LABELS, EMBEDDINGS),
    "circle_options": (
        "Circle",
        dict(gamma=10.0, margin=0.25, remove_diagonal=False),
        CIRCLE_LABELS,
        EMBEDDINGS,
    ),
    "cosine": ("CosineSimilarity", {}, REAL_TRUE, REAL_PRED),
    "cosine_axis_1": ("CosineSimilarity", dict(axis=1), SEQ_TRUE, SEQ_PRED),
    "ctc": ("CTC", {}, CTC_LABELS, CTC_LOGITS),
    "dice": ("Dice", {}, MASK_TRUE, MASK_PRED),
    "dice_per_image": ("Dice", dict(axis=(1, 2, 3)), MASK_TRUE, MASK_PRED),
    "hinge_binary": ("Hinge", {}, BINARY, REAL_PRED),
    "hinge_signs": ("Hinge", {}, SIGNS, REAL_PRED),
    "huber": ("Huber", {}, REAL_TRUE, REAL_PRED),
    "huber_delta": ("Huber", dict(delta=0.5), REAL_TRUE, REAL_PRED),
    "kl_divergence": ("KLDivergence", {}, OTHER_PROBS, PROBS),
    "log_cosh": ("LogCosh", {}, REAL_TRUE, REAL_PRED),
    "mae": ("MeanAbsoluteError", {}, REAL_TRUE, REAL_PRED),
    "mape": ("MeanAbsolutePercentageError", {}, REAL_TRUE, REAL_PRED),
    "mse": ("MeanSquaredError", {}, REAL_TRUE, REAL_PRED),
    "msle": ("MeanSquaredLogarithmicError", {}, POS_TRUE, POS_PRED),
    "poisson": ("Poisson", {}, POS_TRUE, POS_PRED),
    "scce": ("SparseCategoricalCrossentropy", {}, IDS, PROBS),
    "scce_logits_ignore_class": (
        "SparseCategoricalCrossentropy",
        dict(from_logits=True, ignore_class=2),
        IDS,
        LOGITS,
    ),
    "squared_hinge": ("SquaredHinge", {}, SIGNS, REAL_PRED),
    "tversky": ("Tversky", {}, MASK_TRUE, MASK_PRED),
    "tversky_per_image": (
        "Tversky",
        dict(alpha=0.3, beta=0.7, axis=(1, 2, 3)),
        MASK_TRUE,
        MASK_PRED,
    ),
}
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]


def keras_classes() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(keras.losses).items()
        if inspect.isclass(obj)
        and issubclass(obj, keras.losses.Loss)
        and obj is not keras.losses.Loss
    }


def keras_functions() -> dict[str, object]:
    return {
        name: obj
        for name, obj in vars(keras.losses).items()
        if inspect.isfunction(obj) and name not in ("get", "serialize", "deserialize")
    }


def in_keras(fn, *args, **kwargs) -> np.ndarray:
    """A Keras computation, with JAX's usual dtype promotion (Keras relies on it)."""
    with jax.numpy_dtype_promotion("standard"):
        return np.asarray(fn(*args, **kwargs))


# ---------------------------------------------------------------- every Keras loss


def test_every_keras_loss_class_is_implemented_and_tested():
    ours = {n for n, o in vars(losses).items() if inspect.isclass(o) and issubclass(o, losses.Loss)}
    missing = sorted(set(keras_classes()) - ours)
    assert not missing, f"Keras losses without an eqx_elegy counterpart: {missing}"
    untested = sorted(set(keras_classes()) - {case[0] for case in CASES.values()})
    assert not untested, f"Keras losses not compared with Keras in CASES: {untested}"


def test_every_keras_loss_function_is_implemented():
    missing = sorted(n for n in keras_functions() if not callable(getattr(losses, n, None)))
    assert not missing, f"Keras loss functions without an eqx_elegy counterpart: {missing}"


def check_equals_keras(case: str, reduction: str | None, weighted: bool) -> None:
    name, kwargs, y_true, y_pred = CASES[case]
    weight = WEIGHTS if weighted else None
    # Keras multiplies values of shape (batch, n) by a (batch,) weight without lining up
    # the batch axes; its (batch, 1) weight means what eqx_elegy's (batch,) one does.
    per_example_axes = y_pred.ndim == 3 and name != "CTC"
    keras_weight = weight[:, None] if weighted and per_example_axes else weight
    keras_loss = getattr(keras.losses, name)(reduction=reduction, **kwargs)
    expected = in_keras(keras_loss, y_true, y_pred, keras_weight)
    if reduction == "mean_with_sample_weight" and weighted and per_example_axes:
        # Deliberate difference: Keras divides by the sum of the (batch, 1) weights, though
        # each weighs n values; eqx_elegy divides by the sum of the weights of the values.
        expected = expected / (y_pred.size // (B * y_pred.shape[kwargs.get("axis", -1)]))
    got = getattr(losses, name)(reduction=reduction, **kwargs)(y_true, y_pred, weight)
    assert got.dtype == jnp.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    "reduction, weighted",
    [("sum_over_batch_size", False), ("sum_over_batch_size", True), ("none", True)],
)
def test_equals_keras(case, reduction, weighted):
    check_equals_keras(case, reduction, weighted)


# The reductions are shared code; these cover values per example, per element, masked
# values and a loss that is one scalar for the whole batch.
@pytest.mark.parametrize(
    "case", ["mse", "cosine_axis_1", "scce_logits_ignore_class", "circle", "dice"]
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_every_reduction_equals_keras(case, reduction, weighted):
    check_equals_keras(case, reduction, weighted)


@pytest.mark.parametrize("function", sorted(keras_functions()))
def test_functions_equal_keras(function):
    # Unreduced values, on the first case of the class of the same (snake_case) name.
    _, _, y_true, y_pred = next(c for c in CASES.values() if snake_case(c[0]) == function)
    options = {"q": 0.5} if function == "categorical_generalized_cross_entropy" else {}
    expected = in_keras(getattr(keras.losses, function), y_true, y_pred, **options)
    got = getattr(losses, function)(y_true, y_pred, **options)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "function, y_true, y_pred, options",
    [
        ("sparse_categorical_crossentropy", IDS, LOGITS, dict(from_logits=True, ignore_class=2)),
        ("binary_focal_crossentropy", BINARY, LOGITS, dict(apply_class_balancing=True, from_logits=True)),
        ("categorical_focal_crossentropy", ONE_HOT, PROBS, dict(alpha=0.5, gamma=3.0)),
        ("dice", MASK_TRUE, MASK_PRED, dict(axis=(1, 2))),
        ("tversky", MASK_TRUE, MASK_PRED, dict(alpha=0.2, beta=0.8, axis=(1, 2, 3))),
        ("circle", CIRCLE_LABELS, EMBEDDINGS, dict(ref_labels=CIRCLE_LABELS[::-1].copy(),
                                                   ref_embeddings=EMBEDDINGS[::-1].copy())),
    ],
)  # fmt: skip
def test_functions_with_options_equal_keras(function, y_true, y_pred, options):
    expected = in_keras(getattr(keras.losses, function), y_true, y_pred, **options)
    got = getattr(losses, function)(y_true, y_pred, **options)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- string names


def _case_for(loss: losses.Loss) -> str:
    """The first case whose class is the class of `loss`."""
    return next(k for k, c in CASES.items() if c[0] == type(loss).__name__)


@pytest.mark.parametrize("name", sorted(set(KERAS_LOSS_NAMES) - {"Loss", "LossFunctionWrapper"}))
def test_every_keras_loss_name_builds_the_same_loss(name):
    # What `Model(loss=name)` builds computes what Keras' `compile(loss=name)` does.
    (term,) = LossesAndMetrics.build(name, None).losses
    assert isinstance(term.loss, losses.Loss)
    _, _, y_true, y_pred = CASES[_case_for(term.loss)]
    expected = in_keras(keras_compile_loss(name, y_true, y_pred), y_true, y_pred, WEIGHTS)
    np.testing.assert_allclose(term.loss(y_true, y_pred, WEIGHTS), expected, rtol=RTOL, atol=ATOL)
    assert term.loss.name == name  # the string names the term, as in Keras' compile


@pytest.mark.parametrize(
    "name, y_true, y_pred, chosen",
    [
        ("crossentropy", BINARY[:, :1], SIGMOID[:, :1], "binary_crossentropy"),
        ("crossentropy", IDS, PROBS, "sparse_categorical_crossentropy"),
        ("ce", IDS[:, None], PROBS, "sparse_categorical_crossentropy"),
        ("ce", ONE_HOT, PROBS, "categorical_crossentropy"),
    ],
)
def test_crossentropy_name_picks_the_crossentropy_from_shapes(name, y_true, y_pred, chosen):
    (term,) = LossesAndMetrics.build(name, None).losses
    keras_loss = keras_compile_loss(name, y_true, y_pred)
    assert keras_loss.fn.__name__ == chosen
    expected = in_keras(keras_loss, y_true, y_pred, WEIGHTS)
    np.testing.assert_allclose(term.loss(y_true, y_pred, WEIGHTS), expected, rtol=RTOL)
    assert term.log_name == f"{name}_loss"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(
        ValueError,
        match=r"Unknown loss name 'focal' in `loss`\. Known names: .*binary_focal_crossentropy.*"
        r"\(or their class names\)",
    ):
        LossesAndMetrics.build("focal", None)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "name",
    ["BinaryCrossentropy", "BinaryFocalCrossentropy", "Hinge", "SquaredHinge", "Poisson",
     "LogCosh", "KLDivergence", "MeanSquaredError", "Huber"],
)  # fmt: skip
def test_one_output_labels_with_or_without_trailing_axis(name):
    # A model with one output per example gives (batch, 1); labels come as (batch,) or
    # (batch, 1). Every combination is Keras' value for (batch, 1) against (batch, 1).
    t, p = BINARY[:, :1], SIGMOID[:, :1]
    expected = in_keras(getattr(keras.losses, name)(), t, p, WEIGHTS)
    loss = getattr(losses, name)()
    for a, b in [(t, p), (t[:, 0], p), (t, p[:, 0]), (t[:, 0], p[:, 0])]:
        np.testing.assert_allclose(loss(a, b, WEIGHTS), expected, rtol=RTOL)
        np.testing.assert_allclose(loss(a, b, WEIGHTS[:, None]), expected, rtol=RTOL)


def test_multi_label_binary_losses_average_the_labels():
    for loss in [losses.BinaryCrossentropy(), losses.BinaryFocalCrossentropy(), losses.Hinge()]:
        per_label = [loss(BINARY[:, j], SIGMOID[:, j], WEIGHTS) for j in range(C)]
        np.testing.assert_allclose(loss(BINARY, SIGMOID, WEIGHTS), np.mean(per_label), rtol=RTOL)


def test_sparse_labels_accept_a_trailing_axis_and_any_number_dtype():
    for loss in [
        losses.SparseCategoricalCrossentropy(),
        losses.CategoricalGeneralizedCrossEntropy(),
    ]:
        expected = loss(IDS, PROBS, WEIGHTS)
        for labels in [IDS[:, None], IDS.astype(np.uint8), IDS.astype(np.float32)[:, None]]:
            np.testing.assert_allclose(loss(labels, PROBS, WEIGHTS), expected, rtol=1e-6)


def test_sparse_class_axis_may_be_elsewhere():
    sequence_logits = f32(rng.normal(size=(B, 3, C)))
    ids = rng.integers(0, C, size=(B, 3))
    last = losses.SparseCategoricalCrossentropy(from_logits=True)(ids, sequence_logits, WEIGHTS)
    moved = losses.SparseCategoricalCrossentropy(from_logits=True, axis=1)
    np.testing.assert_allclose(
        moved(ids, np.moveaxis(sequence_logits, -1, 1), WEIGHTS), last, rtol=1e-6
    )


@pytest.mark.parametrize(
    "loss, y_true, y_pred, message",
    [
        (losses.SparseCategoricalCrossentropy(), ONE_HOT, PROBS, "use CategoricalCrossentropy"),
        (losses.CategoricalCrossentropy(), IDS, PROBS, "use SparseCategoricalCrossentropy"),
        (losses.CategoricalFocalCrossentropy(), IDS[:, None], PROBS, "class ids"),
        (losses.CategoricalGeneralizedCrossEntropy(), ONE_HOT, PROBS, r"shape \(6,\)"),
        (losses.Hinge(), BINARY, SIGMOID[:, :3], r"\(6, 4\) and y_pred has shape \(6, 3\)"),
    ],
)
def test_wrong_label_encodings_are_named(loss, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        loss(y_true, y_pred)


def test_sequence_losses_weight_each_example():
    # (batch, time, labels) with a (batch,) weight: every step of an example has its weight.
    t = f32(rng.integers(0, 2, size=(B, 3, 2)))
    p = f32(rng.uniform(0.05, 0.95, size=(B, 3, 2)))
    for name in ["BinaryCrossentropy", "BinaryFocalCrossentropy", "Poisson", "LogCosh"]:
        expected = in_keras(getattr(keras.losses, name)(), t, p, WEIGHTS[:, None])
        np.testing.assert_allclose(getattr(losses, name)()(t, p, WEIGHTS), expected, rtol=RTOL)


def test_focal_losses_from_large_logits_keep_finite_nonzero_gradients():
    # Deliberate difference: crossentropy from logits goes through log-sigmoid /
    # log-softmax, so a confidently wrong logit still has a gradient; Keras clips
    # sigmoid(logits) to [1e-7, 1 - 1e-7], which flattens the loss beyond |logit| ~ 16.
    logits = np.array([[-40.0, 40.0]], np.float32)
    labels = np.array([[1.0, 0.0]], np.float32)
    for loss in [
        losses.BinaryFocalCrossentropy(from_logits=True),
        losses.CategoricalFocalCrossentropy(from_logits=True),
    ]:
        grad = jax.grad(lambda z, loss=loss: loss(labels, z))(logits)
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 1e-3


def test_circle_and_ignored_classes_have_clean_gradients():
    # Left-out values (no positive pair, an ignored class) add 0 to the gradient, not NaN
    # (the unpaired embeddings still get a gradient as the others' negatives).
    g = jax.grad(lambda e: losses.Circle()(CIRCLE_LABELS, e))(EMBEDDINGS)
    assert np.all(np.isfinite(g)) and np.abs(g).min() > 0
    scce = losses.SparseCategoricalCrossentropy(ignore_class=2)
    g = jax.grad(lambda p: scce(IDS, p))(PROBS)
    assert np.all(np.isfinite(g)) and np.all(g[IDS == 2] == 0)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: losses.BinaryCrossentropy(from_logits="yes"), TypeError,
         "BinaryCrossentropy: from_logits='yes' must be True or False"),
        (lambda: losses.CategoricalCrossentropy(label_smoothing=1.5), ValueError,
         r"label_smoothing=1.5 must be in \[0.0, 1.0\]"),
        (lambda: losses.CategoricalCrossentropy(axis="last"), TypeError,
         "axis='last' must be an int"),
        (lambda: losses.SparseCategoricalCrossentropy(ignore_class="void"), TypeError,
         "ignore_class='void' must be an int class id or None"),
        (lambda: losses.BinaryFocalCrossentropy(alpha=1.5), ValueError,
         r"BinaryFocalCrossentropy: alpha=1.5 must be in \[0.0, 1.0\]"),
        (lambda: losses.BinaryFocalCrossentropy(gamma=-1), ValueError,
         r"gamma=-1 must be in \[0.0, inf\]"),
        (lambda: losses.BinaryFocalCrossentropy(apply_class_balancing=None), TypeError,
         "apply_class_balancing=None must be True or False"),
        (lambda: losses.CategoricalFocalCrossentropy(alpha=[0.5, "x"]), TypeError,
         r"alpha\[1\]='x' must be a number"),
        (lambda: losses.CategoricalGeneralizedCrossEntropy(q=1.0), ValueError,
         r"q=1.0 must be in \(0.0, 1.0\)"),
        (lambda: losses.Huber(delta=0), ValueError, r"delta=0 must be in \(0.0, inf\]"),
        (lambda: losses.Tversky(beta=-0.5), ValueError, r"beta=-0.5 must be in \[0.0, inf\]"),
        (lambda: losses.Dice(axis=1.5), TypeError,
         "axis=1.5 must be an int, a tuple of ints or None"),
        (lambda: losses.Circle(gamma=0), ValueError, r"Circle: gamma=0 must be in \(0.0, inf\]"),
        (lambda: losses.Circle(remove_diagonal=1), TypeError,
         "remove_diagonal=1 must be True or False"),
        (lambda: losses.Poisson(reduction="avg"), ValueError,
         "Poisson: reduction='avg' is not one of"),
        (lambda: losses.LogCosh(name=3), TypeError, "LogCosh: name=3 must be a str"),
    ],
)  # fmt: skip
def test_bad_constructor_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "loss, y_true, y_pred, message",
    [
        (losses.CategoricalFocalCrossentropy(alpha=[0.5, 0.5]), ONE_HOT, PROBS,
         "alpha has 2 per-class weights, but y_pred has 4 classes"),
        (losses.Dice(axis=(1, 5)), MASK_TRUE, MASK_PRED,
         r"axis=\(1, 5\) is out of range for inputs of shape \(6, 3, 3, 1\)"),
        (losses.CTC(), IDS, CTC_LOGITS, r"y_true has shape \(6,\); it must hold integer labels"),
        (losses.CTC(), CTC_LABELS, LOGITS, r"y_pred has shape \(6, 4\); it must hold logits"),
        (losses.Circle(), CIRCLE_LABELS[:3], EMBEDDINGS, r"y_true has shape \(3,\)"),
        (losses.Circle(), CIRCLE_LABELS, EMBEDDINGS[:, None], r"y_pred has shape \(6, 1, 5\)"),
    ],
)  # fmt: skip
def test_bad_call_inputs_are_named(loss, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        loss(y_true, y_pred)


# ---------------------------------------------------------------- in a model, by name


class PerStep(eqx.Module):
    """A linear map applied at every time step: (time, features) -> (time, classes)."""

    linear: eqx.nn.Linear

    def __call__(self, x):
        return jax.vmap(self.linear)(x)


def _unit(v):
    return v / jnp.linalg.norm(v)


N = 24
X = f32(rng.normal(size=(N, 5)))
FAMILIES = {
    # family: (module, y, loss names); each family is one model with every name as a term.
    "binary_and_regression": (
        lambda k: eqx.nn.Sequential([eqx.nn.Linear(5, 3, key=k), eqx.nn.Lambda(jax.nn.sigmoid)]),
        f32(rng.integers(0, 2, size=(N, 3))),
        ["bce", "binary_focal_crossentropy", "hinge", "squared_hinge", "poisson",
         "kl_divergence", "KLD", "log_cosh", "dice", "tversky", "Huber"],
    ),
    "one_hot": (
        lambda k: eqx.nn.Sequential([eqx.nn.Linear(5, 4, key=k), eqx.nn.Lambda(jax.nn.softmax)]),
        np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=N)],
        ["categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge",
         "crossentropy"],
    ),
    "sparse": (
        lambda k: eqx.nn.Sequential([eqx.nn.Linear(5, 4, key=k), eqx.nn.Lambda(jax.nn.softmax)]),
        rng.integers(0, 4, size=N).astype(np.int32),
        ["sparse_categorical_crossentropy", "categorical_generalized_cross_entropy", "ce"],
    ),
    "embeddings": (
        lambda k: eqx.nn.Sequential([eqx.nn.Linear(5, 3, key=k), eqx.nn.Lambda(_unit)]),
        np.repeat(np.arange(6), 4).astype(np.int32),
        ["circle"],
    ),
    "sequences": (
        lambda k: PerStep(eqx.nn.Linear(5, 4, key=k)),
        np.array([[1, 2, 0], [3, 3, 1], [2, 0, 0], [1, 0, 0]] * 6, np.int32),
        ["ctc"],
    ),
}  # fmt: skip


def keras_reference_loss(name, y_true, y_pred):
    # Keras exports CategoricalGeneralizedCrossEntropy but left it out of its table of
    # names; eqx_elegy accepts the snake_case name like every other loss's.
    if name == "categorical_generalized_cross_entropy":
        return keras.losses.CategoricalGeneralizedCrossEntropy()
    return keras_compile_loss(name, y_true, y_pred)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_model_trains_with_keras_loss_names(family):
    make, y, names = FAMILIES[family]
    x = np.broadcast_to(X[:, None], (N, 6, 5)).copy() if family == "sequences" else X
    model = elegy.Model(module=make(jax.random.key(0)), loss=names, optimizer=optax.adam(0.05))
    logs = model.evaluate(x, y, batch_size=N, verbose=0)
    y_pred = np.asarray(model.predict(x, batch_size=N))
    # Several losses log one `<name>_loss` each; a single one logs as `loss` alone (Keras 3).
    terms = {n: logs[f"{n}_loss"] for n in names} if len(names) > 1 else {names[0]: logs["loss"]}
    assert set(logs) == {"loss", *(f"{n}_loss" for n in names if len(names) > 1)}
    for name in names:
        expected = in_keras(keras_reference_loss(name, y, y_pred), y, y_pred)
        np.testing.assert_allclose(terms[name], expected, rtol=RTOL, err_msg=name)
    np.testing.assert_allclose(logs["loss"], sum(terms.values()), rtol=RTOL)
    history = model.fit(x, y, batch_size=N, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_a_bad_label_shape_fails_before_training_and_leaves_the_model():
    model = elegy.Model(
        module=PerStep(eqx.nn.Linear(5, 4, key=jax.random.key(0))),
        loss="ctc",
        optimizer=optax.adam(0.05),
    )
    x = np.zeros((4, 6, 5), np.float32)
    model.fit(x, np.ones((4, 2), np.int32), batch_size=4, epochs=1, verbose=0)
    before = [np.asarray(w) for w in jax.tree.leaves(model.states.net_params)]
    with pytest.raises(ValueError, match=r"ctc: y_true has shape \(4,\); it must hold"):
        model.fit(x, np.ones(4, np.int32), batch_size=4, epochs=1, verbose=0)
    for a, b in zip(before, jax.tree.leaves(model.states.net_params), strict=True):
        np.testing.assert_array_equal(a, b)
