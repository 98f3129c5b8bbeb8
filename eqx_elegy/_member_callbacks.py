"""Callbacks that act on each member of a `Population` on its own.

A callback that watches a value and acts on the model (EarlyStopping, ModelCheckpoint,
ReduceLROnPlateau, TerminateOnNaN) passed to `Population.fit` is run once per member:
`PerMember` holds a copy of it for each, gives each copy that member's logs (scalars) and
a *member view* as its model: an ordinary Model of the member's class whose engine
(`MemberEngine`) reads the member's slice of the population's states and writes back into
it. So `self.model.states`, `self.set_states(...)` and `self.model.save(...)` act on one
member, and `self.model.stop_training = True` freezes that member (its states stay as
they are while the others train; the fit ends when every member is frozen).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from ._engine import Engine, attach, engine, fields_of, rebuild
from ._states import States
from .callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from .callbacks._callback import HOOKS, overrides

if TYPE_CHECKING:
    from ._model import Model

# The stacked states' one extra key: which members still train (False once a per-member
# callback stopped one; its states then stay as they were while the others train).
ACTIVE = "population_active"

#: The callbacks that `Population.fit` runs once per member.
PER_MEMBER = (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN)

# The hooks that run while members train: not called for a frozen member's copy.
_TRAINING_HOOKS = frozenset(
    hook for hook in HOOKS if hook.startswith(("on_epoch", "on_train_batch"))
)


def inner(states: States) -> States:
    """The members' own states, without the population's `ACTIVE` mask."""
    return States({key: value for key, value in states.items() if key != ACTIVE})


def member_states(states: States, index: int) -> States:
    """Member `index`'s states out of the stacked states."""
    return jax.tree.map(lambda leaf: leaf[index], inner(states))


def with_active(states: States, active: np.ndarray) -> States:
    """`states` with the `ACTIVE` mask set to `active`, placed as the old mask was."""
    old = states[ACTIVE]
    value = np.array(active)  # a copy: the host mask changes later
    new = jax.device_put(value, old.sharding) if old.committed else jax.numpy.asarray(value)
    return states.update(**{ACTIVE: new})


class MemberEngine(Engine):
    """The engine of a member view (see the module docstring): its states are the
    member's slice of the population's, read on `sync` and written back on `commit`;
    `stop_training` freezes the member. `active` is the population's host copy of its
    `ACTIVE` mask, shared by its views (the device copy may be donated mid-fit)."""

    __slots__ = ("_population", "_index", "_active", "_seen")

    def __init__(self, view: Model, population: Model, index: int, active: np.ndarray):
        self._population = population
        self._index = index
        self._active = active
        self._seen: States | None = None
        super().__init__(view, initialized=True)

    @property
    def _whole(self) -> Engine:
        return engine(self._population)

    def sync(self) -> None:
        self._whole.sync()
        states = self._population.states
        if states is not self._seen:
            self._seen = states
            object.__setattr__(self.model, "states", member_states(states, self._index))

    def commit(self, states: States, *, initialized: bool | None = None, flat: Any = None) -> None:
        del initialized, flat  # a member of an initialised population
        self.sync()
        whole = self._population.states
        index = self._index
        replaced = jax.tree.map(lambda w, m: w.at[index].set(m), inner(whole), states)
        self._whole.commit(replaced.update(**{ACTIVE: whole[ACTIVE]}))
        self.sync()

    @property
    def stop_training(self) -> bool:
        return not self._active[self._index]

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        if not value:
            return  # Engine.__init__; a frozen member stays frozen until the next fit
        self._whole.sync()
        active = self._active
        active[self._index] = False
        self._whole.commit(with_active(self._population.states, active))
        if not active.any():
            self._whole.stop_training = True


def member_view(population: Model, member: Model, index: int, active: np.ndarray) -> Model:
    """A model of `member`'s class and configuration that reads and writes member
    `index` of the population whose stacked model is `population` (`active`: see
    `MemberEngine`)."""
    states = member_states(population.states, index)
    view = rebuild(type(member), {**fields_of(member), "states": states}, None)
    attach(view, MemberEngine(view, population, index, active))
    return view


def member_logs(logs: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One member's logs out of a population's (values with a member axis)."""
    return {name: value[index] if np.ndim(value) else value for name, value in logs.items()}


class PerMember(Callback):
    """Runs a copy of `callback` for each member (see the module docstring). The copies
    are also left on the callback as `callback.members`, to read after the fit (e.g.
    `early_stopping.members[2].stopped_epoch`)."""

    def __init__(
        self, callback: Callback, population: Model, members: list[Model], active: np.ndarray
    ):
        super().__init__()
        self.callback = callback
        self._views = [member_view(population, m, i, active) for i, m in enumerate(members)]
        self._active = active
        memo: dict[int, Any] = {}
        attached = getattr(callback, "_model", None)
        if attached is not None:  # a model it ran with before is not copied
            memo[id(attached)] = None
        self.copies = [copy.deepcopy(callback, dict(memo)) for _ in members]
        if isinstance(callback, ModelCheckpoint):
            for index, member in enumerate(self.copies):
                assert isinstance(member, ModelCheckpoint)
                member.filepath = callback.filepath.replace("{member}", str(index))
                member.fields = [field for field in callback.fields if field != "member"]
        vars(callback)["members"] = self.copies
        self.reads_states_per_batch = callback.reads_states_per_batch
        self.batch_end_interval = callback.batch_end_interval
        for hook in HOOKS:
            if overrides(callback, hook):
                setattr(self, hook, functools.partial(self._forward, hook))

    def set_model(self, model: Model) -> None:
        super().set_model(model)
        for member, view in zip(self.copies, self._views, strict=True):
            member.set_model(view)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for member in getattr(self, "copies", ()):
            member.set_params(params)

    def _forward(self, hook: str, *args: Any) -> None:
        for index, member in enumerate(self.copies):
            if hook in _TRAINING_HOOKS and not self._active[index]:
                continue
            given = [member_logs(a, index) if isinstance(a, Mapping) else a for a in args]
            getattr(member, hook)(*given)
