"""`Population`: several copies of a model trained, evaluated and run as one compiled
program.

The members' `States` are stacked along a leading member axis and held by one model of
the members' class (the *stacked model*), whose engine maps the model's own step
functions (`jit_step`, the user's overrides included) over that axis with `jax.vmap`
(`Engine.members`). So a population runs through the same loop, data pipeline and
callbacks as one model: every batch is read once for all members, each step kind
compiles once whatever the number of members, and the steps themselves (and their
run-time type checks) see one member's shapes. Logs and predictions come back with the
member axis in front.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _checkpoint, _loop
from ._distributed import gather_to_host
from ._engine import engine, fields_of, known_initialized, rebuild
from ._jit import JitSteps
from ._member_callbacks import (
    ACTIVE,
    PER_MEMBER,
    PerMember,
    inner,
    member_states,
    with_active,
)
from ._member_config import check_same_configuration
from ._model import Model
from ._states import States
from ._strategy import Strategy
from ._traceback import user_facing
from .callbacks import Callback, History, ModelCheckpoint
from .callbacks._callback import as_callbacks
from .callbacks._monitor import Monitor

_INJECTED = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)


def _is_injected(node: Any) -> bool:
    return isinstance(node, _INJECTED)


# ---------------------------------------------------------------------------- arguments


def _seeds(size: Any, seeds: Any, hyperparams: Mapping[str, Sequence[Any]]) -> list[int]:
    """The members' seeds from `size`, `seeds` and the length of the hyperparameter lists,
    which must agree."""
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1
    ):
        raise ValueError(f"Population: size must be an int >= 1, got {size!r}.")
    lengths = {len(values) for values in hyperparams.values()}
    if seeds is not None:
        if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence | range | np.ndarray):
            raise TypeError(
                f"Population: seeds must be a sequence of ints (one per member), got "
                f"{type(seeds).__name__}."
            )
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int | np.integer)]
        if bad:
            raise TypeError(f"Population: seeds must be ints, got {bad[0]!r}.")
        if len(seeds) == 0:
            raise ValueError("Population: seeds is empty; pass one seed per member.")
        if size is not None and size != len(seeds):
            raise ValueError(
                f"Population: size={size} but {len(seeds)} seeds were given; pass one seed "
                "per member, or only one of size and seeds."
            )
        size = len(seeds)
    if size is None:
        if not lengths:
            raise ValueError(
                "Population: pass size (the number of members), seeds (one per member) or "
                "hyperparams (lists of one value per member)."
            )
        size = lengths.pop()
    for name, values in hyperparams.items():
        if len(values) != size:
            raise ValueError(
                f"Population: hyperparams[{name!r}] has {len(values)} values for {size} "
                "members; give every hyperparameter one value per member."
            )
    return [int(s) for s in (range(size) if seeds is None else seeds)]


def _hyperparams(hyperparams: Any) -> dict[str, list[Any]]:
    """`hyperparams` checked: a mapping from names to lists of numbers."""
    if hyperparams is None:
        return {}
    if not isinstance(hyperparams, Mapping):
        raise TypeError(
            "Population: hyperparams must be a dict from hyperparameter names to lists of "
            f"values (one per member), e.g. {{'learning_rate': [1e-3, 1e-2]}}; got "
            f"{type(hyperparams).__name__}."
        )
    out: dict[str, list[Any]] = {}
    for name, values in hyperparams.items():
        if not isinstance(name, str):
            raise TypeError(f"Population: hyperparams keys must be names (str), got {name!r}.")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
            raise TypeError(
                f"Population: hyperparams[{name!r}] must be a list of values (one per "
                f"member), got {type(values).__name__}."
            )
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TypeError(
                    f"Population: hyperparams[{name!r}] holds {value!r}; each value must be a "
                    "number."
                )
        out[name] = list(values)
    lengths = {name: len(values) for name, values in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"Population: the hyperparams lists have different lengths ({lengths}); give "
            "every hyperparameter one value per member."
        )
    return out


def _member(model: Model | Callable[[int], Model], seed: int, index: int) -> Model:
    """Member `index`: `model(seed)`, or `model` with `seed` in place of its own, starting
    from the states `states_step` gives for that seed."""
    if isinstance(model, Model):
        member = rebuild(type(model), {**fields_of(model), "seed": seed}, None)
        object.__setattr__(member, "states", member.states_step())
        return member
    member = model(seed)
    if not isinstance(member, Model):
        raise TypeError(
            f"Population: model(seed) must return an eqx_elegy.Model, but model({seed}) (member "
            f"{index}) returned {type(member).__name__}."
        )
    return member


def _injected_names(model: Model, states: States) -> list[str]:
    """The hyperparameters that `model`'s optimizer keeps in its state."""
    optimizer_states = states.optimizer_states
    if optimizer_states is None and model.optimizer is not None:
        params = states.net_params if states.net_params is not None else {}
        try:
            optimizer_states = jax.eval_shape(model.optimizer.init, params)
        except Exception:  # noqa: BLE001 - an optimizer that needs real parameters
            return []
    nodes = jax.tree.leaves(optimizer_states, is_leaf=_is_injected)
    return sorted({name for node in nodes if _is_injected(node) for name in node.hyperparams})


def _check_injected(model: Model, states: States, hyperparams: Mapping[str, Any]) -> None:
    names = _injected_names(model, states)
    for name in hyperparams:
        if name not in names:
            found = (
                f"it injects {', '.join(names)}"
                if names
                else "it injects none (it is not built with optax.inject_hyperparams)"
            )
            raise ValueError(
                f"Population: hyperparams[{name!r}] is not a hyperparameter the model's "
                f"optimizer keeps in its state: {found}. Build it as, e.g., "
                f"optax.inject_hyperparams(optax.adam)({name}=...)."
            )


def _with_hyperparams(optimizer_states: Any, values: Mapping[str, Any]) -> Any:
    """`optimizer_states` with each injected hyperparameter in `values` replaced (one
    member's scalar, or every member's values stacked), keeping its dtype."""

    def replace(node: Any) -> Any:
        if not _is_injected(node):
            return node
        hyperparams = dict(node.hyperparams)
        for name, value in values.items():
            if name in hyperparams:
                old = hyperparams[name]
                hyperparams[name] = jnp.asarray(value, dtype=jnp.asarray(old).dtype)
        return node._replace(hyperparams=hyperparams)

    return jax.tree.map(replace, optimizer_states, is_leaf=_is_injected)


def _describe_leaves(states: States) -> dict[str, str]:
    return {
        jax.tree_util.keystr(path): f"{jnp.result_type(leaf)}{list(np.shape(leaf))}"
        for path, leaf in jax.tree_util.tree_leaves_with_path(states)
    }


def _stack(states: list[States]) -> States:
    """The members' states stacked along a new leading axis; they must have the same
    structure, shapes and dtypes."""
    first = _describe_leaves(states[0])
    for index, member in enumerate(states[1:], start=1):
        other = _describe_leaves(member)
        if other != first:
            diff = next(
                (
                    f"states{p}: {first.get(p, 'missing')} in member 0, "
                    f"{other.get(p, 'missing')} in member {index}"
                )
                for p in [*first, *other]
                if first.get(p) != other.get(p)
            )
            raise ValueError(
                "Population: every member must have states of the same structure, shapes and "
                f"dtypes, to be trained as one program; {diff}."
            )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def _frozen(new: States, old: States, active: Any) -> States:
    """`new` for the active members, `old` for the others."""
    new_def: Any = jax.tree.structure(new)  # jax's PyTreeDef, which mypy cannot compare
    if new_def != jax.tree.structure(old):
        return new  # the engine's layout check reports the step's mistake

    def pick(n: Any, o: Any) -> Any:
        return jnp.where(active.reshape(active.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


class _Members:
    """What `Engine.members` holds for a population: the model's step functions mapped
    over the members, taking and returning the stacked states (with the `ACTIVE` mask,
    which the members' own steps never see), and the hyperparameters the initialisation
    injects. With `freezing`, the train step keeps the states of the members the mask
    marks inactive: a select over all the states, which costs about a tenth of a
    compute-bound step, so it is compiled in only for fits with per-member callbacks."""

    def __init__(self, size: int, hyperparams: Mapping[str, list[Any]], freezing: bool = False):
        self.size = size
        self.hyperparams = {name: np.asarray(values) for name, values in hyperparams.items()}
        self.freezing = freezing

    def wrap(self, steps: JitSteps) -> JitSteps:
        hyperparams = self.hyperparams
        inits = jax.vmap(steps.init, in_axes=(0, None, None))
        trains = jax.vmap(steps.train, in_axes=(0, None, None, None, None))
        tests = jax.vmap(steps.test, in_axes=(0, None, None, None))
        # The predictions carry the member axis second, behind the batch axis, so that
        # the loop concatenates batches as it does for one model.
        preds = jax.vmap(steps.pred, in_axes=(0, None, None), out_axes=(1, 0))

        def init(states: States, batch: Any, class_weight: Any) -> States:
            new = inits(inner(states), batch, class_weight)
            if hyperparams and new.optimizer_states is not None:
                new = new.update(
                    optimizer_states=_with_hyperparams(new.optimizer_states, hyperparams)
                )
            return new.update(**{ACTIVE: states[ACTIVE]})

        freezing = self.freezing

        def train(states: States, *args: Any) -> tuple[Any, States]:
            active, old = states[ACTIVE], inner(states)
            logs, new = trains(old, *args)
            if freezing:
                new = _frozen(new, old, active)
            return logs, new.update(**{ACTIVE: active})

        def evaluation(fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(states: States, *args: Any) -> tuple[Any, States]:
                out, new = fn(inner(states), *args)
                return out, new.update(**{ACTIVE: states[ACTIVE]})

            return run

        return steps._replace(
            init=init, train=train, test=evaluation(tests), pred=evaluation(preds)
        )


# ---------------------------------------------------------------------------- Population


class Population:
    """Several copies of a model, trained, evaluated and run together as one compiled
    program (the model's steps vmapped over its members).

    - `model`: an `eqx_elegy.Model`, or a callable `seed -> Model` (so that each member's
      module is initialised from its seed, as a deep ensemble needs).
    - `size`: the number of members; `seeds`: one seed per member (default `range(size)`).
      Member i is `model` with `seed=seeds[i]` (or `model(seeds[i])`), starting from the
      states a fresh model of that seed has.
    - `hyperparams`: `{"learning_rate": [...], ...}`, one value per member, for
      hyperparameters that an `optax.inject_hyperparams` optimizer keeps in its state.

    All members see the same batches (shuffled with the first member's seed). `fit`,
    `evaluate` and `predict` take the Model's arguments and return logs and predictions
    with a leading member axis (History values are arrays of shape `[size]`).
    `members()` gives each member as an ordinary Model.
    """

    def __init__(
        self,
        model: Model | Callable[[int], Model],
        size: int | None = None,
        seeds: Sequence[int] | None = None,
        hyperparams: Mapping[str, Sequence[float]] | None = None,
    ):
        if not isinstance(model, Model) and (
            isinstance(model, type | eqx.Module) or not callable(model)
        ):
            hint = (
                " (an equinox module: wrap it as eqx_elegy.Model(module=..., loss=..., "
                "optimizer=...))"
                if isinstance(model, eqx.Module)
                else ""
            )
            raise TypeError(
                "Population: model must be an eqx_elegy.Model or a callable seed -> Model, "
                f"got {type(model).__name__}{hint}."
            )
        values = _hyperparams(hyperparams)
        self._seeds = _seeds(size, seeds, values)
        self._hyperparams = values
        if values and isinstance(model, Model):  # checked before building anything
            _check_injected(model, model.states, values)
        members = [_member(model, self._seeds[0], 0)]
        if values:
            _check_injected(members[0], members[0].states, values)
        members += [_member(model, seed, i) for i, seed in enumerate(self._seeds) if i]
        states = [m.states for m in members]
        if values:
            states = [
                s
                if s.optimizer_states is None
                else s.update(
                    optimizer_states=_with_hyperparams(
                        s.optimizer_states, {k: v[i] for k, v in values.items()}
                    )
                )
                for i, s in enumerate(states)
            ]
        self._members = members
        template = members[0]
        # Which members train: all, until a per-member callback stops one (host copy; the
        # states hold the device copy the compiled step reads).
        self._active = np.ones(len(members), bool)
        stacked = _stack(states).update(**{ACTIVE: jnp.ones(len(members), bool)})
        check_same_configuration(members)
        self._model = rebuild(type(template), {**fields_of(template), "states": stacked}, None)
        engine(self._model).members = _Members(len(self._seeds), values)

    # ------------------------------------------------------------------ what it holds

    @property
    def size(self) -> int:
        """The number of members."""
        return len(self._seeds)

    def __len__(self) -> int:
        return self.size

    @property
    def seeds(self) -> list[int]:
        """Each member's seed."""
        return list(self._seeds)

    @property
    def hyperparams(self) -> dict[str, list[Any]]:
        """Each injected hyperparameter's starting value per member."""
        return {name: list(values) for name, values in self._hyperparams.items()}

    @property
    def states(self) -> States:
        """The members' states, stacked along a leading member axis."""
        return self._model.states

    @property
    def history(self) -> History | None:
        """The History of the latest `fit`: per epoch, arrays with one value per member."""
        return self._model.history

    @property
    def stop_training(self) -> bool:
        """Set it to True (e.g. in a callback) to end `fit` for every member."""
        return self._model.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self._model.stop_training = value

    def __repr__(self) -> str:
        extra = "".join(f", {name}={values}" for name, values in self._hyperparams.items())
        return f"Population({type(self._model).__name__}, seeds={self._seeds}{extra})"

    # ------------------------------------------------------------------ members

    def members(self) -> list[Model]:
        """Each member as an ordinary Model (with its own seed and states), independent
        of the population: fitting, saving or predicting with it leaves the others as
        they are. Members of a distributed population come back on the host, without the
        strategy."""
        engine(self._model).sync()
        states = self._model.states
        if self._model.strategy is not None:
            states = gather_to_host(states)
        initialized = self._model.initialized
        return [
            rebuild(
                type(member),
                {**fields_of(member), "states": member_states(states, index)},
                initialized,
            )
            for index, member in enumerate(self._members)
        ]

    def best(self, monitor: str = "val_loss", mode: str = "auto") -> Model:
        """The member whose `monitor` log was best at the end of the latest `fit` (lowest
        with `mode="min"`, highest with `"max"`; `"auto"` decides from the name, as
        EarlyStopping does), as an ordinary Model. Members whose value is NaN never win."""
        found = Monitor("Population.best", monitor, mode)
        history = self.history
        if history is None or not history.epoch:
            raise ValueError(
                "Population.best picks a member by the logs of the latest fit, but the "
                "population has not been fitted; call fit first."
            )
        if monitor not in history.history:
            raise ValueError(
                f"Population.best: monitor={monitor!r} is not in the latest fit's logs "
                f"(available: {', '.join(sorted(history.history))}); pass one of those, e.g. "
                "'loss', or fit with validation data for 'val_loss'."
            )
        values = np.asarray(history.history[monitor][-1], dtype=np.float64)
        if np.isnan(values).all():
            raise ValueError(f"Population.best: {monitor} is NaN for every member.")
        index = int(np.nanargmin(values) if found.mode == "min" else np.nanargmax(values))
        return self.members()[index]

    # ------------------------------------------------------------------ save, load, distribute

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        weights_only: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Save every member's states into directory `path`, as `Model.save` does for
        one model: the stacked states, with the seeds and hyperparameters in the
        manifest's metadata (under "population")."""
        described = {"seeds": self.seeds, "hyperparams": self.hyperparams}
        _checkpoint.save(
            self._model,
            path,
            weights_only=weights_only,
            metadata={"population": described, **(metadata or {})},
        )

    def load(self, path: str | os.PathLike[str], *, weights_only: bool = False) -> None:
        """Load a save of a population built the same way (same model, number of members
        and shapes); anything else is refused with a `CheckpointError` and nothing
        changes."""
        _checkpoint.load(self._model, path, weights_only=weights_only)
        self._active[:] = np.asarray(self._model.states[ACTIVE])

    def distributed(self, strategy: Strategy) -> Population:
        """A copy of this population that runs with `strategy` (e.g.
        `eqx_elegy.DataParallel()`: every member's states replicated, each batch split
        over the devices). This population is left as it was."""
        model = self._model.distributed(strategy)
        engine(model).members = engine(self._model).members
        copy = object.__new__(Population)
        vars(copy).update(vars(self), _model=model, _active=self._active.copy())
        return copy

    # ------------------------------------------------------------------ high level

    @user_facing
    def init(
        self,
        x: Any = None,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
    ) -> States:
        """Initialise every member from a batch of data, as `Model.init` does."""
        return self._model.init(x, y, sample_weight, class_weight)

    @user_facing
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int = 1,
        callbacks: Callback | Sequence[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        class_weight: dict[int, float] | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
        drop_remaining: bool = False,
        steps_per_execution: int | Literal["auto"] | None = None,
    ) -> History:
        """Train every member on the same batches, as `Model.fit`; the History's values
        are arrays with one value per member.

        EarlyStopping, ModelCheckpoint, ReduceLROnPlateau and TerminateOnNaN act on each
        member on its own (see `PerMember`): a stopped member is frozen while the others
        train, and the fit ends when all are. A ModelCheckpoint's filepath must then
        hold a `{member}` field. Other callbacks see the whole population: logs with a
        member axis, and `self.model` holding the stacked states."""
        callbacks = self._callbacks(callbacks)
        if not self._active.all():  # members frozen by the last fit train again
            self._active[:] = True
            engine(self._model).commit(with_active(self._model.states, self._active))
        return _loop.fit(
            self._model,
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            sample_weight=sample_weight,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            validation_batch_size=validation_batch_size,
            validation_freq=validation_freq,
            drop_remaining=drop_remaining,
            steps_per_execution=steps_per_execution,
        )

    def _callbacks(self, callbacks: Callback | Sequence[Callback] | None) -> list[Callback]:
        """`callbacks` (as `Model.fit` takes them) with those that act per member wrapped
        in `PerMember`."""
        callbacks = as_callbacks(callbacks)
        if any(isinstance(callback, PER_MEMBER) for callback in callbacks):
            self._freezing()
        out: list[Callback] = []
        for callback in callbacks:
            if isinstance(callback, ModelCheckpoint) and "member" not in callback.fields:
                raise ValueError(
                    f"ModelCheckpoint in Population.fit saves each member on its own, so its "
                    f"filepath must hold a {{member}} field (the member's index), e.g. "
                    f"'ckpt/member{{member}}'; got {callback.filepath!r}. To save the whole "
                    "population, call population.save(path)."
                )
            if isinstance(callback, PER_MEMBER):
                out.append(PerMember(callback, self._model, self._members, self._active))
            else:
                out.append(callback)
        return out

    def _freezing(self) -> None:
        """Make the train step keep the states of frozen members (see `_Members`): the
        stacked model is rebuilt with a new engine, whose steps compile on first use."""
        members = engine(self._model).members
        if not isinstance(members, _Members) or members.freezing:
            return
        model = self._model
        rebuilt = rebuild(type(model), fields_of(model), known_initialized(model))
        engine(rebuilt).members = _Members(self.size, self._hyperparams, freezing=True)
        self._model = rebuilt

    @user_facing
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int = 1,
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | Literal["auto"] | None = None,
    ) -> dict[str, np.ndarray]:
        """Each member's loss and metrics over the data, as `Model.evaluate`: a dict of
        arrays of shape `[size]`."""
        logs = _loop.evaluate(
            self._model,
            x=x,
            y=y,
            batch_size=batch_size,
            verbose=verbose,
            sample_weight=sample_weight,
            steps=steps,
            callbacks=callbacks,
            steps_per_execution=steps_per_execution,
        )
        return {name: np.asarray(value) for name, value in logs.items()}

    @user_facing
    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int = 0,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | Literal["auto"] | None = None,
    ) -> Any:
        """Each member's predictions for every example of `x`, as `Model.predict`, with a
        leading member axis: shape `[size, examples, ...]` (at each leaf of a pytree of
        outputs)."""
        out = _loop.predict(
            self._model,
            x=x,
            batch_size=batch_size,
            verbose=verbose,
            steps=steps,
            callbacks=callbacks,
            steps_per_execution=steps_per_execution,
        )
        return jax.tree.map(lambda a: np.moveaxis(a, 1, 0), out)
