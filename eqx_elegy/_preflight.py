"""Checks that `fit` and `evaluate` run on array data before the first step.

They are cheap: the labels are checked on the host with numpy, and the model's output
shapes come from an abstract evaluation (`jax.eval_shape`) of the default `pred_step` on
one batch, which compiles nothing and is done once per model and input shapes. So a bad
argument fails with an error that names it before anything compiles or the model
changes, instead of training silently on it (a class id out of range gives a loss of 0
and no gradient) or failing inside XLA with a message that does not name it.

What is checked, and when (docs/high-level-api.md says the same):
- `x` and `validation_data` x: the module can be applied to a batch of them (with the
  default `pred_step` and a `module`); otherwise a ValueError naming the argument, its
  shape and the module's own error.
- `ModelCheckpoint` filepaths: their format fields are logs the fit will produce (with
  the default steps; `{batch}` only for step-wise saves).
- Labels of a `SparseCategoricalCrossentropy` loss (arrays only; a streamed source is
  read batch by batch and not checked): finite, integral, in `[0, classes)` where
  `classes` is the size of the output's class axis (the loss's `axis`), and not
  one-hot; labels equal to the loss's `ignore_class` are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from ._engine import engine
from ._losses_and_metrics import _select
from .callbacks import Callback, ModelCheckpoint
from .losses import SparseCategoricalCrossentropy

if TYPE_CHECKING:
    from ._model import Model


def output_shapes(model: Model, x: Any, x_name: str) -> Any:
    """The abstract `y_pred` of the default `pred_step` for the batch `x` (None when the
    model has its own `pred_step` or no module). A module that cannot be applied to `x`
    raises a ValueError that names `x_name`."""
    if model.module is None or "pred_step" in model._overridden():
        return None
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.result_type(a)), x)
    key = ("y_pred", jax.tree.structure(spec), tuple(jax.tree.leaves(spec)))
    cache = engine(model)._compiled  # the engine's per-model cache: once per input shapes
    if key not in cache:
        try:
            y_pred, _ = jax.eval_shape(
                lambda states, x: model._default_pred_step(x, states, False, False),
                model.states,
                spec,
            )
        except Exception as error:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(
                f"The module cannot be applied to {x_name}: a batch of {x_name} is "
                f"{describe_batch(x)}, and the module failed on it with "
                f"{type(error).__name__}: {error}\nPass {x_name} with the shape and dtype "
                "the module expects (one example per row; the feature axes must match the "
                "module's input layer)."
            ) from error
        cache[key] = y_pred
    return cache[key]


def describe_batch(x: Any) -> str:
    leaves = jax.tree_util.tree_leaves_with_path(x)
    if len(leaves) == 1 and not leaves[0][0]:
        return _array(leaves[0][1])
    return ", ".join(f"{jax.tree_util.keystr(p)}: {_array(a)}" for p, a in leaves)


def _array(a: Any) -> str:
    return f"{np.result_type(a)}{list(np.shape(a))}"


def check_sparse_labels(model: Model, y_pred: Any, y: Any, y_name: str) -> None:
    """Raise a ValueError naming `y_name` when the labels that a
    `SparseCategoricalCrossentropy` loss reads are not class ids of the output
    (`y_pred`, abstract) they go with."""
    if y is None or y_pred is None or model.loss is None:
        return
    lm = model._losses_and_metrics()
    for term in lm.losses:
        if not isinstance(term.loss, SparseCategoricalCrossentropy):
            continue
        try:
            chosen = _select(term.target, lm.loss_positions, "loss", term.log_name, y, y_pred, None)
        except (TypeError, ValueError):
            continue  # a structure mismatch: the step's own trace says what is wrong
        for key, labels, output, _ in chosen:
            name = y_name if key is None else f"{y_name}[{key!r}]"
            _check_class_ids(
                np.asarray(labels),
                tuple(output.shape),
                name,
                term.log_name,
                term.loss.axis,
                term.loss.ignore_class,
            )


def _check_class_ids(
    labels: np.ndarray,
    output: tuple[int, ...],
    name: str,
    loss: str,
    axis: int = -1,
    ignore_class: int | None = None,
) -> None:
    """`labels` (all of them) against one batch of the loss's output, whose class axis
    is `axis`; labels equal to `ignore_class` are skipped, as the loss skips them."""
    if len(output) < 2 or not -len(output) <= axis < len(output):
        return  # no class axis: the loss's own check says so
    classes = output[axis]
    what = (
        f"{name} holds the labels of the sparse categorical crossentropy {loss!r}, which must "
        f"be class ids: integers in [0, {classes}) (the output has {classes} classes)"
    )
    if labels.ndim == len(output) and labels.shape[axis] == classes and classes > 1:
        raise ValueError(
            f"{what}, but {name} has shape {list(labels.shape)}, the shape of the output: it "
            "looks one-hot. Pass y.argmax(-1), or use CategoricalCrossentropy."
        )
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"{what}, but {name} has dtype {labels.dtype}.")
    flat = labels.reshape(-1)
    kept = np.ones(flat.shape, bool) if ignore_class is None else flat != ignore_class
    problems = (
        ("is not finite", ~np.isfinite(flat)),
        ("is not an integer", flat != np.round(flat)),
        ("is negative", flat < 0),
        (f"is {classes} or more", flat >= classes),
    )
    for problem, found in problems:
        bad = found & kept
        if bad.any():
            index = int(np.argmax(bad))
            example = np.unravel_index(index, labels.shape)[0]
            raise ValueError(
                f"{what}, but {name} {problem} at example {example} ({flat[index].item()!r}; "
                f"{int(bad.sum())} such labels). Fix or drop those examples; a label out "
                "of range would otherwise train silently with a loss of 0."
            )


def check_checkpoint_fields(
    model: Model, callbacks: list[Callback], batch: Any, validation: bool
) -> None:
    """A `ModelCheckpoint` whose `filepath` names a log the fit will not produce fails
    here rather than when it first saves (after an epoch of training). The logs are those
    of the default steps, found by abstract evaluation of `test_step` on `batch` (only
    when some filepath has such a field, and not with a step of the user's own, whose
    logs cannot be known before it runs)."""
    checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
    for cb in checkpoints:
        if "batch" in cb.fields and cb.save_freq == "epoch":
            raise ValueError(
                f"ModelCheckpoint: filepath {cb.filepath!r} uses {{batch}}, but it saves at "
                "the end of each epoch (save_freq='epoch'), where there is no batch: drop "
                "{batch}, or pass save_freq=N to save every N steps."
            )
    fields = {f for cb in checkpoints for f in cb.fields} - {"epoch", "batch"}
    if not fields or model._overridden() & {"train_step", "grad_step", "test_step"}:
        return
    x, y, sample_weight = batch
    _, logs, _ = jax.eval_shape(
        lambda states, x, y, sample_weight: model._default_test_step(
            x, y, sample_weight, None, states, not model.initialized, True
        ),
        model.states,
        x,
        y,
        sample_weight,
    )
    names = set(logs) | ({f"val_{name}" for name in logs} if validation else set())
    for cb in checkpoints:
        available = names | {"epoch"} | ({"batch"} if cb.save_freq != "epoch" else set())
        if cb.save_freq != "epoch":  # batch logs: the training logs alone
            available -= {f"val_{name}" for name in logs}
        missing = [f for f in cb.fields if f not in available]
        if missing:
            raise ValueError(
                f"ModelCheckpoint: filepath {cb.filepath!r} uses {{{missing[0]}}}, which is "
                f"not a log of this fit; available: {', '.join(sorted(available))}."
            )
