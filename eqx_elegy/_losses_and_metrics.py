"""`LossesAndMetrics`: turns `loss=`, `metrics=` and `loss_weights=` into one pure
function of a batch, used by the default `Model.test_step`.

Matching outputs (Keras' rules, decided at trace time from the structure of
`y_pred`):

- a single loss or metric (or a dict entry whose key is not an output name, with
  a single-array output) applies to the whole output; with several outputs it
  applies to each of them, the loss summed over outputs into one term and the
  metric pooled over outputs into one value;
- a list gives terms in order; when the module returns a tuple/list of outputs,
  the list is matched to them by position (same length, `None` skips an output),
  otherwise every term applies to the single output;
- a dict with a module returning a dict of outputs matches by key; a key that
  is no output is an error (the message lists the outputs). With a single output
  the keys just name the terms.

Regularizers can sit anywhere in `loss=`; they read `net_params`, not outputs.

Log names: `loss` (the weighted total), `<name>_loss` per term (`name` is the
loss's name, or its dict key), metrics by name (prefixed `<key>_` in a dict).
A repeated name gets `_1`, `_2`, ... as in Keras. Every log is the running value
over the batches seen since the states were initialised: losses are averaged
weighted by batch size (Keras' loss tracker), so over an epoch they equal the
loss of the whole data.

Unlike Keras' `metrics=`, which ignores sample weights (only `weighted_metrics=`
uses them), every metric here is weighted by `sample_weight` and `class_weight`,
as in Elegy.
"""

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PyTree

from . import losses as losses_module
from . import metrics as metrics_module
from .losses import Loss, LossFunction
from .losses._loss import snake_case
from .losses._probabilistic import AutoCrossentropy
from .metrics import MeanMetricWrapper, Metric
from .metrics._loss_metrics import LossMean
from .regularizers import Regularizer

LossLike: TypeAlias = Loss | Regularizer | Callable[..., Any] | str
MetricLike: TypeAlias = Metric | Loss | Callable[..., Any] | str
# Where a term applies: None = every output, int = a position in a tuple of
# outputs (from a list), str = a key of a dict of outputs (from a dict).
Target: TypeAlias = int | str | None

# Keras' string names (and aliases): `keras.losses.get` / `keras.metrics.get`, plus
# `loss="crossentropy"` (or "ce"), which Keras' compile resolves from the shapes. A
# name may also be given in upper case ("MSE") or as the class name ("Huber").
_LOSS_NAMES: dict[str, type[Loss]] = {
    "mean_squared_error": losses_module.MeanSquaredError,
    "mse": losses_module.MeanSquaredError,
    "mean_absolute_error": losses_module.MeanAbsoluteError,
    "mae": losses_module.MeanAbsoluteError,
    "mean_absolute_percentage_error": losses_module.MeanAbsolutePercentageError,
    "mape": losses_module.MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": losses_module.MeanSquaredLogarithmicError,
    "msle": losses_module.MeanSquaredLogarithmicError,
    "huber": losses_module.Huber,
    "huber_loss": losses_module.Huber,
    "log_cosh": losses_module.LogCosh,
    "cosine_similarity": losses_module.CosineSimilarity,
    "binary_crossentropy": losses_module.BinaryCrossentropy,
    "bce": losses_module.BinaryCrossentropy,
    "categorical_crossentropy": losses_module.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": losses_module.SparseCategoricalCrossentropy,
    "binary_focal_crossentropy": losses_module.BinaryFocalCrossentropy,
    "categorical_focal_crossentropy": losses_module.CategoricalFocalCrossentropy,
    "categorical_generalized_cross_entropy": losses_module.CategoricalGeneralizedCrossEntropy,
    "kl_divergence": losses_module.KLDivergence,
    "kld": losses_module.KLDivergence,
    "poisson": losses_module.Poisson,
    "hinge": losses_module.Hinge,
    "squared_hinge": losses_module.SquaredHinge,
    "categorical_hinge": losses_module.CategoricalHinge,
    "dice": losses_module.Dice,
    "tversky": losses_module.Tversky,
    "circle": losses_module.Circle,
    "ctc": losses_module.CTC,
    "crossentropy": AutoCrossentropy,
    "ce": AutoCrossentropy,
}
_METRIC_NAMES: dict[str, Callable[..., Metric]] = {
    "accuracy": metrics_module.Accuracy,
    "acc": metrics_module.Accuracy,
    "binary_accuracy": metrics_module.BinaryAccuracy,
    "categorical_accuracy": metrics_module.CategoricalAccuracy,
    "sparse_categorical_accuracy": metrics_module.SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": metrics_module.TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": metrics_module.SparseTopKCategoricalAccuracy,
    "true_positives": metrics_module.TruePositives,
    "false_positives": metrics_module.FalsePositives,
    "true_negatives": metrics_module.TrueNegatives,
    "false_negatives": metrics_module.FalseNegatives,
    "precision": metrics_module.Precision,
    "recall": metrics_module.Recall,
    "auc": metrics_module.AUC,
    # Keras' F1Score()/FBetaScore() give one value per class; a log is one number.
    "f1": metrics_module.F1,
    "f1_score": metrics_module.F1,
    "f_beta_score": functools.partial(metrics_module.FBetaScore, average="macro"),
    "fbeta_score": functools.partial(metrics_module.FBetaScore, average="macro"),
    "binary_io_u": metrics_module.BinaryIoU,
    "mean": metrics_module.Mean,
    "sum": metrics_module.Sum,
    # Regression and probabilistic metrics.
    "mean_squared_error": metrics_module.MeanSquaredError,
    "mse": metrics_module.MeanSquaredError,
    "mean_absolute_error": metrics_module.MeanAbsoluteError,
    "mae": metrics_module.MeanAbsoluteError,
    "mean_absolute_percentage_error": metrics_module.MeanAbsolutePercentageError,
    "mape": metrics_module.MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": metrics_module.MeanSquaredLogarithmicError,
    "msle": metrics_module.MeanSquaredLogarithmicError,
    "root_mean_squared_error": metrics_module.RootMeanSquaredError,
    "cosine_similarity": metrics_module.CosineSimilarity,
    "log_cosh_error": metrics_module.LogCoshError,
    "r2_score": metrics_module.R2Score,
    "pearson_correlation": metrics_module.PearsonCorrelation,
    "concordance_correlation": metrics_module.ConcordanceCorrelation,
    "kl_divergence": metrics_module.KLDivergence,
    "poisson": metrics_module.Poisson,
    "binary_crossentropy": metrics_module.BinaryCrossentropy,
    "bce": metrics_module.BinaryCrossentropy,
    "categorical_crossentropy": metrics_module.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": metrics_module.SparseCategoricalCrossentropy,
    "hinge": metrics_module.Hinge,
    "squared_hinge": metrics_module.SquaredHinge,
    "categorical_hinge": metrics_module.CategoricalHinge,
}
# Keras names of metrics that need arguments (Keras cannot build them from the name
# either): what to pass instead.
_METRIC_NEEDS_ARGUMENTS = {
    "io_u": "IoU(num_classes, target_class_ids)",
    "mean_io_u": "MeanIoU(num_classes)",
    "one_hot_io_u": "OneHotIoU(num_classes, target_class_ids)",
    "one_hot_mean_io_u": "OneHotMeanIoU(num_classes)",
    "precision_at_recall": "PrecisionAtRecall(recall)",
    "recall_at_precision": "RecallAtPrecision(precision)",
    "sensitivity_at_specificity": "SensitivityAtSpecificity(specificity)",
    "specificity_at_sensitivity": "SpecificityAtSensitivity(sensitivity)",
    "mean_metric_wrapper": "MeanMetricWrapper(fn)",
}


def _by_name(table: Mapping[str, type[Any]], module: Any, spec: str, kind: str, where: str) -> Any:
    """The object a string names (a snake_case name or alias, in any case, or a public
    class name), named by the string as Keras' compile names it."""
    by_class = {c.__name__: c for c in table.values() if getattr(module, c.__name__, None) is c}
    cls = table.get(spec.lower(), by_class.get(spec))
    if cls is None:
        raise ValueError(
            f"Unknown {kind} name {spec!r} in {where}. Known names: {', '.join(sorted(table))} "
            "(or their class names)."
        )
    return cls(name=spec)


_LOSS_ACCEPTED = (
    "a Loss (eqx_elegy.losses), a Regularizer (eqx_elegy.regularizers), a callable "
    "(y_true, y_pred) -> loss, or a loss name"
)
_METRIC_ACCEPTED = (
    "a Metric (eqx_elegy.metrics), a Loss, a callable (y_true, y_pred) -> "
    "per-example values, or a metric name"
)


def _loss_object(spec: Any, where: str) -> Loss | Regularizer:
    if isinstance(spec, Loss | Regularizer):
        return spec
    if isinstance(spec, str):
        return _by_name(_LOSS_NAMES, losses_module, spec, "loss", where)
    if isinstance(spec, Metric):
        raise TypeError(
            f"{where} is a Metric ({type(spec).__name__}); pass metrics in `metrics=`. "
            f"A loss is {_LOSS_ACCEPTED}."
        )
    if callable(spec) and not isinstance(spec, eqx.Module | type):
        return LossFunction(cast(Callable[[Array, Array], ArrayLike], spec))
    raise TypeError(f"{where} must be {_LOSS_ACCEPTED}; got {type(spec).__name__}: {spec!r}.")


def _metric_key(spec: str) -> str:
    """The key of `_METRIC_NAMES` for a name as Keras accepts it: snake_case
    (`"top_k_categorical_accuracy"`), the class name (`"TopKCategoricalAccuracy"`)
    or an alias (`"acc"`, `"MSE"`); the name lowercased when none matches."""
    for key in (spec.lower(), snake_case(spec)):
        if key in _METRIC_NAMES or key in _METRIC_NEEDS_ARGUMENTS:
            return key
    return spec.lower()


def _metric_object(spec: Any, where: str) -> Metric:
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        key = _metric_key(spec)
        if key in _METRIC_NEEDS_ARGUMENTS:
            raise ValueError(
                f"The metric {spec!r} in {where} needs arguments: pass "
                f"eqx_elegy.metrics.{_METRIC_NEEDS_ARGUMENTS[key]} instead of its name."
            )
        if key not in _METRIC_NAMES:
            raise ValueError(
                f"Unknown metric name {spec!r} in {where}. Known names: "
                f"{', '.join(sorted(_METRIC_NAMES))} (or their class names)."
            )
        return _METRIC_NAMES[key](name=spec)
    if isinstance(spec, Loss):
        return LossMean(spec)
    if isinstance(spec, Regularizer):
        raise TypeError(f"{where} is a Regularizer; pass it in `loss=`, not `metrics=`.")
    if callable(spec) and not isinstance(spec, eqx.Module | type):
        return MeanMetricWrapper(cast(Callable[[Array, Array], ArrayLike], spec))
    raise TypeError(f"{where} must be {_METRIC_ACCEPTED}; got {type(spec).__name__}: {spec!r}.")


def _spec_name(spec: Any) -> str | None:
    return _metric_key(spec) if isinstance(spec, str) else None


def _metric_objects(specs: Any, where: str) -> list[tuple[Metric, str | None]]:
    """The metrics of one dict or list entry (None, one metric, or a list of them), each
    with the key of the name it was given by (None for an object)."""
    if isinstance(specs, list | tuple):
        return [
            (_metric_object(s, f"{where}[{j}]"), _spec_name(s))
            for j, s in enumerate(specs)
            if s is not None
        ]
    return [] if specs is None else [(_metric_object(specs, where), _spec_name(specs))]


def _unique(names: Sequence[str], taken: set[str]) -> list[str]:
    """Keras' disambiguation: the second `accuracy` is `accuracy_1`, and so on."""
    out = []
    for name in names:
        candidate, i = name, 0
        while candidate in taken:
            i += 1
            candidate = f"{name}_{i}"
        taken.add(candidate)
        out.append(candidate)
    return out


class _LossTerm(eqx.Module):
    log_name: str = eqx.field(static=True)
    loss: Loss | Regularizer
    weight: float = eqx.field(static=True)
    target: Target = eqx.field(static=True)


class _MetricTerm(eqx.Module):
    log_name: str = eqx.field(static=True)
    metric: Metric
    target: Target = eqx.field(static=True)
    # The name it was given by (`metrics=["precision"]`), else None: a named metric
    # takes `from_logits` from the output's binary crossentropy, as the user chose
    # no arguments.
    spec: str | None = eqx.field(static=True)


def _running_mean(state: dict[str, Array], value: Array, weight: Array) -> dict[str, Array]:
    return {"total": state["total"] + value * weight, "count": state["count"] + weight}


def _tracker() -> dict[str, Array]:
    return {"total": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}


def _structure(y: Any) -> str:
    if isinstance(y, Mapping):
        return "{" + ", ".join(f"{k!r}: {_structure(v)}" for k, v in y.items()) + "}"
    if isinstance(y, tuple | list):
        return "(" + ", ".join(_structure(v) for v in y) + ")"
    return f"array{tuple(np.shape(y))}" if y is not None else "None"


class LossesAndMetrics(eqx.Module):
    """The compiled-step view of `loss=`, `metrics=` and `loss_weights=`.

    Build it once with `LossesAndMetrics.build(loss, metrics, loss_weights)`;
    then `init()` gives the metrics states and each batch calls
    `lam(states, y_true, y_pred, sample_weight, class_weight, net_params,
    batch_size=n)` -> `(loss, logs, states)`. See the module docstring for how
    terms are matched to outputs and named.
    """

    losses: tuple[_LossTerm, ...]
    metrics: tuple[_MetricTerm, ...]
    # Lengths of the `loss=` / `metrics=` lists (0 when not lists): with a tuple
    # of outputs, a list must give one entry per output.
    loss_positions: int = eqx.field(static=True)
    metric_positions: int = eqx.field(static=True)

    @classmethod
    def build(
        cls,
        loss: LossLike | Sequence[LossLike | None] | Mapping[str, LossLike | None] | None,
        metrics: MetricLike
        | Sequence[MetricLike | Sequence[MetricLike] | None]
        | Mapping[str, MetricLike | Sequence[MetricLike] | None]
        | None,
        loss_weights: float | Sequence[float] | Mapping[str, float] | None = None,
    ) -> "LossesAndMetrics":
        """Checks and normalises the user's `loss`, `metrics` and `loss_weights`.

        Raises TypeError/ValueError naming the argument for anything it cannot use.
        """
        # (name, object, target, weight key) per loss term.
        loss_entries: list[tuple[str, Loss | Regularizer, Target, Any]] = []
        loss_positions = 0
        if loss is None:
            pass
        elif isinstance(loss, Mapping):
            for key, loss_spec in loss.items():
                if not isinstance(key, str):
                    raise TypeError(f"`loss` dict keys must be str, got {key!r}.")
                if loss_spec is not None:
                    obj = _loss_object(loss_spec, f"loss[{key!r}]")
                    target = None if isinstance(obj, Regularizer) else key
                    loss_entries.append((key, obj, target, key))
        elif isinstance(loss, list | tuple):
            loss_positions = sum(1 for s in loss if not isinstance(s, Regularizer))
            position = 0
            for i, loss_spec in enumerate(loss):
                if loss_spec is None:
                    position += 1
                    continue
                obj = _loss_object(loss_spec, f"loss[{i}]")
                if isinstance(obj, Regularizer):
                    loss_entries.append((obj.name, obj, None, i))
                else:
                    loss_entries.append((obj.name, obj, position, i))
                    position += 1
        else:
            obj = _loss_object(loss, "`loss`")
            loss_entries.append((obj.name, obj, None, None))

        weights = cls._loss_weights(loss, loss_weights, [e[3] for e in loss_entries])
        log_names = _unique([e[0] for e in loss_entries], {"loss"})
        terms = tuple(
            _LossTerm(f"{name}_loss", obj, weight, target)
            for name, (_, obj, target, _), weight in zip(
                log_names, loss_entries, weights, strict=True
            )
        )

        metric_entries: list[tuple[str, Metric, Target, str | None]] = []
        metric_positions = 0
        if isinstance(metrics, Mapping):
            for key, specs in metrics.items():
                if not isinstance(key, str):
                    raise TypeError(f"`metrics` dict keys must be str, got {key!r}.")
                for m, spec in _metric_objects(specs, f"metrics[{key!r}]"):
                    metric_entries.append((f"{key}_{m.name}", m, key, spec))
        elif isinstance(metrics, list | tuple):
            metric_positions = len(metrics)
            for i, specs in enumerate(metrics):
                for m, spec in _metric_objects(specs, f"metrics[{i}]"):
                    metric_entries.append((m.name, m, i, spec))
        elif metrics is not None:
            m = _metric_object(metrics, "`metrics`")
            metric_entries.append((m.name, m, None, _spec_name(metrics)))
        taken = {"loss"} | {t.log_name for t in terms}
        metric_names = _unique([e[0] for e in metric_entries], taken)
        metric_terms = tuple(
            _MetricTerm(name, m, target, spec)
            for name, (_, m, target, spec) in zip(metric_names, metric_entries, strict=True)
        )
        return cls(terms, metric_terms, loss_positions, metric_positions)

    @staticmethod
    def _loss_weights(loss: Any, loss_weights: Any, keys: list[Any]) -> list[float]:
        """One float per term, from `loss_weights` shaped like `loss`."""

        def number(w: Any, where: str) -> float:
            if isinstance(w, bool) or not isinstance(w, int | float | np.number):
                raise TypeError(f"{where} must be a number, got {type(w).__name__}: {w!r}.")
            return float(w)

        if loss_weights is None:
            return [1.0] * len(keys)
        if isinstance(loss_weights, Mapping):
            if not isinstance(loss, Mapping):
                raise TypeError(
                    "`loss_weights` is a dict, so `loss` must be a dict with the same keys; "
                    f"got loss of type {type(loss).__name__}."
                )
            unknown = sorted(set(loss_weights) - set(loss))
            if unknown:
                raise ValueError(
                    f"`loss_weights` keys {unknown} are not keys of `loss` ({sorted(loss)})."
                )
            return [number(loss_weights.get(k, 1.0), f"loss_weights[{k!r}]") for k in keys]
        if isinstance(loss_weights, list | tuple):
            if not isinstance(loss, list | tuple) or len(loss) != len(loss_weights):
                raise ValueError(
                    f"`loss_weights` is a list of {len(loss_weights)}, so `loss` must be a "
                    f"list of the same length; got {_structure_of_spec(loss)}."
                )
            return [number(loss_weights[i], f"loss_weights[{i}]") for i in keys]
        w = number(loss_weights, "`loss_weights`")
        return [w] * len(keys)

    @property
    def has_loss(self) -> bool:
        """Whether `loss=` gave at least one term (a data loss or a regularizer)."""
        return bool(self.losses)

    @property
    def logged_terms(self) -> tuple[_LossTerm, ...]:
        """The loss terms logged under their own `<name>_loss` names: all of them when
        there are several, none when there is one, whose value is then `loss` itself
        (Keras 3 logs a single loss as `loss` alone)."""
        return self.losses if len(self.losses) > 1 else ()

    @property
    def log_names(self) -> list[str]:
        """The log names in display order: `loss`, the terms, the metrics (a dict
        returned through `jax.jit` comes back with its keys sorted)."""
        terms = [t.log_name for t in self.logged_terms]
        return ["loss", *terms, *(m.log_name for m in self.metrics)]

    def init(self) -> dict[str, PyTree[Array]]:
        """Fresh metrics states: a running mean for `loss` and each logged term, and each
        metric's own state (float32 arrays, never weak-typed)."""
        states: dict[str, PyTree[Array]] = {"loss": _tracker()}
        for term in self.logged_terms:
            states[term.log_name] = _tracker()
        for m in self.metrics:
            states[m.log_name] = m.metric.init()
        return states

    def __call__(
        self,
        metrics_states: dict[str, PyTree[Array]],
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        class_weight: Mapping[int, float] | None,
        net_params: PyTree,
        *,
        batch_size: int | ArrayLike,
        all_params: PyTree = None,
    ) -> tuple[Array, dict[str, Array], dict[str, PyTree[Array]]]:
        """One batch: `(weighted total loss, running logs, new metrics states)`.

        The total loss is a float32 scalar to differentiate. Regularizers read
        `net_params` (the trainable parameters), or `all_params` (frozen ones too, when
        given) for a regularizer built with `include_frozen=True`. `class_weight` (a dict
        class id -> weight, classes not in it weigh 1) turns labels into
        per-example weights, multiplied into `sample_weight`.
        """
        if isinstance(y_pred, Mapping):
            self._check_keys(list(y_pred))
        if class_weight is not None:
            sample_weight = _apply_class_weight(class_weight, y_true, y_pred, sample_weight)
        n = jnp.asarray(batch_size).astype(jnp.float32)
        new_states: dict[str, PyTree[Array]] = {}
        total = jnp.zeros((), jnp.float32)
        for term in self.losses:
            if isinstance(term.loss, Regularizer):
                if net_params is None:
                    raise ValueError(
                        f"Regularizer {term.log_name!r} needs the model's parameters, "
                        "but net_params is None."
                    )
                frozen_too = term.loss.include_frozen and all_params is not None
                value = term.loss(all_params if frozen_too else net_params)
            else:
                value = jnp.zeros((), jnp.float32)
                for _, yt, yp, sw in _select(
                    term.target, self.loss_positions, "loss", term.log_name,
                    y_true, y_pred, sample_weight,
                ):  # fmt: skip
                    v = jnp.asarray(term.loss(yt, yp, sw))
                    if v.shape != ():
                        raise ValueError(
                            f"Loss term {term.log_name!r} returned shape {v.shape}; a model's "
                            "loss terms must be scalars (reduction='none' is for direct calls)."
                        )
                    value = value + v.astype(jnp.float32)
            value = value.astype(jnp.float32)
            total = total + term.weight * value
            if self.logged_terms:
                new_states[term.log_name] = _running_mean(metrics_states[term.log_name], value, n)
        new_states["loss"] = _running_mean(metrics_states["loss"], total, n)
        for m in self.metrics:
            state = metrics_states[m.log_name]
            for key, yt, yp, sw in _select(
                m.target, self.metric_positions, "metrics", m.log_name,
                y_true, y_pred, sample_weight,
            ):  # fmt: skip
                metric = _for_output(m, self._losses_on(key))
                state = metric.update(state, yt, yp, sw)
            new_states[m.log_name] = state
        logs = {"loss": _mean_value(new_states["loss"])}
        for term in self.logged_terms:
            logs[term.log_name] = _mean_value(new_states[term.log_name])
        for m in self.metrics:
            value = jnp.asarray(m.metric.compute(new_states[m.log_name]))
            if value.shape != ():
                raise ValueError(
                    f"Metric {m.log_name!r} ({type(m.metric).__name__}) gives a value of shape "
                    f"{value.shape} (one per threshold or class), but a model logs one number "
                    "per metric: give it a single threshold, or average='macro'/'micro'/"
                    "'weighted' for per-class scores."
                )
            logs[m.log_name] = value.astype(jnp.float32)
        return total, logs, new_states

    def _losses_on(self, key: int | str | None) -> list[Loss]:
        """The data losses applied to output `key` (None: the single output)."""
        return [
            t.loss
            for t in self.losses
            if isinstance(t.loss, Loss) and (key is None or t.target is None or t.target == key)
        ]

    def _check_keys(self, outputs: list[Any]) -> None:
        """Every dict key in `loss=`/`metrics=` must name one of the module's outputs."""
        for argument, targets in [
            ("loss", [t.target for t in self.losses]),
            ("metrics", [m.target for m in self.metrics]),
        ]:
            unknown = sorted({k for k in targets if isinstance(k, str) and k not in outputs})
            if unknown:
                raise ValueError(
                    f"`{argument}` has keys {unknown} that match no output; the module's "
                    f"outputs are {outputs}."
                )

    def nan_hint(self) -> str:
        """Likely causes of a NaN or infinite loss with these losses, for an error message."""
        hints = []
        for term in self.losses:
            loss = term.loss
            if getattr(loss, "from_logits", True) is False:
                hints.append(
                    f"{term.log_name}: {type(loss).__name__}(from_logits=False) expects "
                    "probabilities (after a softmax or sigmoid); if the module outputs raw "
                    "logits, pass from_logits=True."
                )
            elif isinstance(loss, LossFunction):
                hints.append(
                    f"{term.log_name}: a plain-function loss can take the log of values "
                    "outside its domain (e.g. logits given to a formula for probabilities); "
                    "a library crossentropy with from_logits=True is stable."
                )
        hints.append("otherwise: a learning rate too high, or NaN/inf in x, y or sample_weight.")
        return "Possible causes:\n- " + "\n- ".join(hints)

    def check(self, loss: ArrayLike) -> None:
        """Raises FloatingPointError with `nan_hint()` if a (host-side) loss is not finite."""
        value = np.asarray(loss)
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(f"The loss is {value}. {self.nan_hint()}")


def _structure_of_spec(spec: Any) -> str:
    if isinstance(spec, list | tuple):
        return f"a list of {len(spec)}"
    return type(spec).__name__


def _mean_value(state: dict[str, Array]) -> Array:
    count = state["count"]
    return jnp.where(count == 0, 0.0, state["total"] / jnp.where(count == 0, 1.0, count))


def _select(
    target: Target,
    positions: int,
    argument: str,
    log_name: str,
    y_true: Any,
    y_pred: Any,
    sample_weight: Any,
) -> list[tuple[int | str | None, Any, Any, Any]]:
    """The `(output key, y_true, y_pred, sample_weight)` a term applies to; the key is
    None for a single output."""
    if y_true is None:
        raise TypeError(
            f"{argument} term {log_name!r} needs labels, but y_true (the `y` given to "
            "fit/evaluate) is None."
        )
    if isinstance(y_pred, Mapping):
        keys = list(y_pred)
        if isinstance(target, int):
            raise ValueError(
                f"`{argument}` is a list, but the module returns a dict of outputs "
                f"{keys}: pass `{argument}` as a dict keyed by output."
            )
        chosen: list[Any] = keys if target is None else [target]
        if not isinstance(y_true, Mapping) or any(k not in y_true for k in chosen):
            raise ValueError(
                f"The module returns outputs {keys}, so y_true must be a dict with "
                f"their keys ({chosen}); got y_true {_structure(y_true)}."
            )
    elif isinstance(y_pred, tuple | list):
        n = len(y_pred)
        if isinstance(target, int) and positions != n:
            raise ValueError(
                f"`{argument}` is a list of {positions}, but the module returns {n} outputs: "
                "give one entry per output (None to skip one), or a single one for all."
            )
        if not isinstance(y_true, tuple | list) or len(y_true) != n:
            raise ValueError(
                f"The module returns a tuple of {n} outputs, so y_true must be a tuple of "
                f"{n}; got y_true {_structure(y_true)}."
            )
        chosen = [target] if isinstance(target, int) else list(range(n))
    else:
        return [(None, y_true, y_pred, sample_weight)]
    nested_weight = isinstance(sample_weight, Mapping | tuple | list)
    return [
        (k, y_true[k], y_pred[k], sample_weight[k] if nested_weight else sample_weight)
        for k in chosen
    ]


def _for_output(term: _MetricTerm, output_losses: list[Loss]) -> Metric:
    """The metric to update on one output, given the losses on that output.

    Keras resolves `"accuracy"` from the shapes (`Accuracy` does that itself); a binary
    crossentropy on the output also says that each column is a binary label, so
    `"accuracy"` (or a plain `Accuracy()`) is the binary accuracy, at the loss's
    logits-or-probabilities threshold, multi-label outputs included. A metric given
    by name takes the loss's `from_logits` (an object keeps the arguments it was
    built with).
    """
    binary = [loss for loss in output_losses if isinstance(loss, losses_module.BinaryCrossentropy)]
    if not binary:
        return term.metric
    from_logits = any(loss.from_logits for loss in binary)
    if type(term.metric) is metrics_module.Accuracy:
        threshold = 0.0 if from_logits else 0.5
        return metrics_module.BinaryAccuracy(threshold, name=term.metric.name)
    if term.spec is not None and from_logits:
        build = _METRIC_NAMES[term.spec]
        if "from_logits" in inspect.signature(build).parameters:
            return build(from_logits=True, name=term.metric.name)
    return term.metric


def _is_number(w: Any) -> bool:
    """A Python/numpy number, or a scalar JAX array (a class weight traced by jit)."""
    if isinstance(w, bool):
        return False
    if isinstance(w, int | float | np.number):
        return True
    return isinstance(w, jax.Array) and w.shape == () and jnp.issubdtype(w.dtype, jnp.number)


def _apply_class_weight(
    class_weight: Mapping[int, float], y_true: Any, y_pred: Any, sample_weight: Any
) -> Array:
    """Per-example weights `class_weight[label]` (1 for absent classes) times `sample_weight`.

    Labels are class ids, or one-hot rows (their argmax), or 0/1 binary labels.
    """
    if not isinstance(class_weight, Mapping):
        raise TypeError(
            "`class_weight` must be a dict {class id: weight}, got "
            f"{type(class_weight).__name__}."
        )
    if isinstance(y_pred, Mapping | tuple | list):
        raise ValueError(
            "`class_weight` works with a single output; the module returns "
            f"{_structure(y_pred)}. Pass per-output `sample_weight` instead."
        )
    if y_true is None:
        raise TypeError("`class_weight` needs labels, but y_true is None.")
    pred_shape: tuple[int, ...] = tuple(np.shape(y_pred))
    num_classes = pred_shape[-1] if len(pred_shape) >= 2 and pred_shape[-1] > 1 else 2
    # The weights may arrive traced (a dict passed through jit); the keys are static.
    table = jnp.ones(num_classes, jnp.float32)
    out_of_range = []
    for key, w in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            raise TypeError(f"`class_weight` keys must be int class ids, got {key!r}.")
        if not _is_number(w):
            raise TypeError(f"`class_weight[{key}]` must be a number, got {w!r}.")
        if not 0 <= key < num_classes:
            out_of_range.append(int(key))
        else:
            table = table.at[int(key)].set(jnp.asarray(w).astype(jnp.float32))
    if out_of_range:
        raise ValueError(
            f"`class_weight` has class ids {out_of_range} out of range: y_pred of shape "
            f"{pred_shape} has {num_classes} classes (ids 0..{num_classes - 1})."
        )
    labels = jnp.asarray(y_true)
    if len(pred_shape) >= 2 and labels.ndim == len(pred_shape):
        if labels.shape[-1] == pred_shape[-1] > 1:  # one-hot rows
            labels = jnp.argmax(labels, axis=-1)
        elif labels.shape[-1] == 1:
            labels = labels[..., 0]
    if jnp.issubdtype(labels.dtype, jnp.floating):
        labels = jnp.round(labels)
    per_example = jnp.take(table, labels.astype(jnp.int32), mode="fill", fill_value=1.0)
    if sample_weight is None:
        return per_example
    weight = jnp.asarray(sample_weight).astype(jnp.float32)
    if weight.ndim == per_example.ndim + 1 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    rank = max(weight.ndim, per_example.ndim)
    weight = weight.reshape(weight.shape + (1,) * (rank - weight.ndim))
    per_example = per_example.reshape(per_example.shape + (1,) * (rank - per_example.ndim))
    return weight * per_example
