"""Checks that `fit` and `evaluate` run before the first step.

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
- Callbacks (any data): `ModelCheckpoint` filepath fields and the `monitor` of
  `EarlyStopping`, `ReduceLROnPlateau` and `ModelCheckpoint(save_best_only=True)` name
  logs the fit will produce (with the default train/grad/test steps: a step of the
  user's own is not run ahead to find its logs); `{batch}` only for step-wise saves. A
  name a callback before it may add (one of the user's own) is a warning, as in Keras.
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
from ._member_callbacks import PerMember
from ._states import States
from ._warn import warn_user
from .callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from .callbacks._monitor import Monitor
from .callbacks._reduce_lr import has_learning_rate
from .losses import SparseCategoricalCrossentropy

if TYPE_CHECKING:
    from ._model import Model


def output_shapes(model: Model, x: Any, x_name: str) -> Any:
    """The abstract `y_pred` of the default `pred_step` for the batch `x`, as the loop
    runs it (for a population, one member's; None when the model has its own `pred_step`
    or no module). A module that cannot be applied to `x` raises a ValueError that names
    `x_name`."""
    if model.module is None or "pred_step" in model._overridden():
        return None
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.result_type(a)), x)
    key = ("y_pred", jax.tree.structure(spec), tuple(jax.tree.leaves(spec)))
    run = engine(model)
    cache = run._compiled  # the engine's per-model cache: once per input shapes
    if key not in cache:
        try:
            y_pred, _ = jax.eval_shape(run.jit_steps().pred, model.states, spec, 0)
        except Exception as error:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(
                f"The module cannot be applied to {x_name}: a batch of {x_name} is "
                f"{describe_batch(x)}, and the module failed on it with "
                f"{type(error).__name__}: {error}\nPass {x_name} with the shape and dtype "
                "the module expects (one example per row; the feature axes must match the "
                "module's input layer)."
            ) from error
        if run.members is not None:  # a population's: the member axis follows the batch's
            y_pred = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape[:1] + a.shape[2:], a.dtype), y_pred
            )
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


# The callbacks of eqx_elegy that add no log of their own to the logs the callbacks after
# them see; any other callback before a monitor may add the log it watches (as in Keras).
_MONITORS = (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint)
_NO_NEW_LOGS = (
    BackupAndRestore,
    CSVLogger,
    EarlyStopping,
    History,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    LearningRateScheduler,
    TensorBoard,
    TerminateOnNaN,
)


def check_callbacks(model: Model, callbacks: list[Callback], batch: Any, validation: bool) -> None:
    """The log names that `callbacks` rely on, checked before the first step against the
    logs the fit will produce (see `fit_logs`), rather than after an epoch of training:
    `ModelCheckpoint` filepath fields, and the `monitor` of `EarlyStopping`,
    `ReduceLROnPlateau` and `ModelCheckpoint(save_best_only=True)`. A name the fit does
    not log is a ValueError naming the callback, the name and the logs there are; when a
    callback before it may add logs of its own (one not from eqx_elegy, or a
    LambdaCallback), it is a warning instead, as Keras warns. Nothing is checked when the
    logs cannot be known before the steps run (the user's own train/grad/test step)."""
    # (what uses the name, the name, other names it may use, per step, may be added)
    used: list[tuple[str, str, set[str], bool, bool]] = []
    added = False  # whether a callback so far may add logs
    for given in callbacks:
        callback = given.callback if isinstance(given, PerMember) else given
        owner = type(callback).__name__
        per_step = isinstance(callback, ModelCheckpoint) and callback.save_freq != "epoch"
        if isinstance(callback, ModelCheckpoint):
            if "batch" in callback.fields and not per_step:
                raise ValueError(
                    f"ModelCheckpoint: filepath {callback.filepath!r} uses {{batch}}, but it "
                    "saves at the end of each epoch (save_freq='epoch'), where there is no "
                    "batch: drop {batch}, or pass save_freq=N to save every N steps."
                )
            fixed = {"epoch"} | ({"batch"} if per_step else set())
            if isinstance(given, PerMember):
                fixed.add("member")
            used += [
                (f"{owner}: filepath {callback.filepath!r} uses {{{field}}}, which", field, fixed)
                + (per_step, added)
                for field in callback.fields
                if field not in fixed
            ]
        monitor = getattr(callback, "monitor", None)
        if isinstance(callback, _MONITORS) and isinstance(monitor, Monitor):
            used.append(
                (f"{owner}: monitor={monitor.name!r}", monitor.name, set(), per_step, added)
            )
        added = added or type(callback) not in _NO_NEW_LOGS
    if not used:
        return
    logs = fit_logs(model, batch)
    if logs is None:
        return
    step_logs = logs - {"learning_rate"}  # a step-wise save sees the train step's logs
    epoch_logs = logs | ({f"val_{name}" for name in step_logs} if validation else set())
    for user, name, fixed, per_step, may_be_added in used:
        available = (step_logs if per_step else epoch_logs) | fixed
        if name in available:
            continue
        message = (
            f"{user} is not a log of this fit; available{' at each step' if per_step else ''}: "
            f"{', '.join(sorted(available))}."
        )
        if name.startswith("val_") and not validation and not per_step:
            message += " val_ logs need validation data: pass validation_data or validation_split."
        if not may_be_added:
            raise ValueError(message)
        warn_user(
            f"{message} A callback before it may add that log, so this is a warning (as in "
            "Keras); if none does, the callback never acts on it."
        )


def fit_logs(model: Model, batch: Any) -> set[str] | None:
    """The names of the logs a fit of `model` produces at each epoch, without the val_
    ones: those of the train step (found by abstract evaluation of the test step, which
    the default train step logs, on `batch`: nothing compiles, once per model and batch
    shapes), and `learning_rate` when the optimizer keeps one in its state. None when a
    step of the user's own makes them: its logs cannot be known before it runs."""
    if model._overridden() & {"train_step", "grad_step", "test_step"}:
        return None
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.result_type(a)), batch)
    key = ("fit_logs", model.initialized, jax.tree.structure(spec), tuple(jax.tree.leaves(spec)))
    run = engine(model)
    if key not in run._compiled:
        steps = run.jit_steps()

        def logs_of(states: States, batch: Any) -> tuple[Any, Any]:
            if not model.initialized:
                states = steps.init(states, batch, None)
            logs, states = steps.test(states, batch, None, 0)
            return logs, states.optimizer_states

        logs, optimizer_states = jax.eval_shape(logs_of, model.states, spec)
        rate = {"learning_rate"} if has_learning_rate(optimizer_states) else set()
        run._compiled[key] = set(logs) | rate
    return set(run._compiled[key])
