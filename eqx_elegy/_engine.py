"""The engine object behind each model: everything a model keeps besides its fields.

A `Model` is an immutable equinox module whose one changing part is `states`. What the
high-level API needs on top of it (the compiled steps, built once per model; the states
as the flat buffers those steps take; whether the model is initialised; the History of
the latest fit; the `stop_training` flag; the point a resumed fit starts at) lives in
one `Engine`, created on first use and kept in the model's `__dict__` outside its
fields. So it is not part of the pytree (jax transformations and `eqx.tree_at` leave it
behind), pickle and copies drop it (`Model.__reduce__`), and it refers to its model only
weakly: a model the user drops is freed with everything its engine compiled.

`Engine.commit` is the only place where `model.states` changes.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Protocol

import jax

from ._flat import Layout, flatten_states_on_host
from ._jit import (
    Compiled,
    Evaluation,
    JitSteps,
    carried_leaves,
    compile_evaluation,
    compile_training,
)
from ._states import States
from ._strategy import strategy_of

if TYPE_CHECKING:
    from ._model import Model
    from .callbacks import History

_ATTRIBUTE = "_engine"


class Members(Protocol):
    """A population run by this engine (`_population`): the model's states carry a leading
    member axis, and `wrap` maps the model's step functions over it."""

    def wrap(self, steps: JitSteps) -> JitSteps:
        """The step functions of `steps`, mapped over the member axis of the states."""
        ...


class Live(Protocol):
    """The states of a fit under way (`_loop._Live`), as the engine sees them."""

    def push(self) -> None:
        """Store the latest states on the model, if they changed since the last push."""


class Engine:
    """The runtime side of one model (see the module docstring).

    Attributes read and set by the loop and by callbacks (through the model's public
    properties): `initialized` (None until known: then the model's states decide),
    `history`, `stop_training` and `resume_at` (an `(epoch, step)` that the next fit
    starts at instead of its `initial_epoch`, set by `BackupAndRestore`), `batch_epoch`
    (the epoch the next `train_on_batch` runs as). `members` is set by a `Population` on
    the model that holds its stacked states: the compiled steps are then the model's own,
    vmapped over the members, and their logs carry the member axis.
    """

    __slots__ = (
        "_model",
        "live",
        "initialized",
        "history",
        "stop_training",
        "resume_at",
        "batch_epoch",
        "members",
        "_steps",
        "_compiled",
        "_flat",
    )

    def __init__(self, model: Model, initialized: bool | None = None):
        self._model = weakref.ref(model)
        # The fit under way, if any: the states it is running, which `sync` stores on the
        # model when something reads them (see `Callback.model`).
        self.live: Live | None = None
        self.initialized = initialized
        self.history: History | None = None
        self.stop_training = False
        self.resume_at: tuple[int, int] | None = None
        # The epoch the next `train_on_batch` runs as (each call is a one-step epoch).
        self.batch_epoch = 0
        self.members: Members | None = None
        self._steps: JitSteps | None = None
        self._compiled: dict[Any, Any] = {}
        # The states last flattened for the compiled steps: (states, buffers, layout).
        self._flat: tuple[States, list[Any], Layout] | None = None

    @property
    def model(self) -> Model:
        model = self._model()
        if model is None:  # only a caller that kept the engine alone gets here
            raise ReferenceError("The model this engine belonged to has been deleted.")
        return model

    def commit(
        self,
        states: States,
        *,
        initialized: bool | None = None,
        flat: tuple[list[Any], Layout] | None = None,
    ) -> None:
        """Make `states` the model's states. `flat` gives the flat buffers and layout of
        `states` as placed for the compiled steps, when the caller has them, so that the
        next evaluate or predict does not flatten them again."""
        object.__setattr__(self.model, "states", states)
        if initialized is not None:
            self.initialized = initialized
        self._flat = None if flat is None else (states, *flat)

    def sync(self) -> None:
        """Bring `model.states` up to date with a fit under way (a no-op otherwise)."""
        if self.live is not None:
            self.live.push()

    # ------------------------------------------------------------------ compiled steps

    def jit_steps(self) -> JitSteps:
        """`model.jit_step()`, built once."""
        if self._steps is None:
            steps = self.model.jit_step()
            self._steps = steps if self.members is None else self.members.wrap(steps)
        return self._steps

    def flat_states(self) -> tuple[list[Any], Layout]:
        """The model's states as the flat buffers the compiled steps take (placed by the
        model's strategy), flattened once per states object: evaluate and predict must
        not spend a small model's whole evaluation time packing the same states again."""
        model = self.model
        flat = self._flat
        if flat is not None and flat[0] is model.states:
            return flat[1], flat[2]
        strategy = strategy_of(model)
        states = strategy.put_states(model.states)
        leaves, layout = flatten_states_on_host(states, pack=strategy.packs_states)
        self._flat = (model.states, leaves, layout)
        return leaves, layout

    def owned_flat_states(self) -> tuple[list[Any], Layout]:
        """The model's states as flat buffers (placed by the model's strategy) that the
        caller owns: a training step may donate them, and arrays the user holds (`old =
        model.states`) stay valid. Packed buffers are new arrays anyway (see
        `flatten_states_on_host`), and those the latest fit or `train_on_batch` left are
        taken as they are: the model's states were unpacked from them into arrays of
        their own, so a fit after a fit copies nothing. Unpacked states are copied leaf
        by leaf."""
        model = self.model
        flat = self._flat
        if flat is not None and flat[0] is model.states and flat[2].packed:
            self._flat = None  # the caller may donate them: no evaluation may use them
            return flat[1], flat[2]
        strategy = strategy_of(model)
        states = model.states if strategy.packs_states else _copied(model.states)
        return flatten_states_on_host(strategy.put_states(states), pack=strategy.packs_states)

    def training(self, layout: Layout) -> Compiled:
        """The compiled training steps for states of `layout`, built once per layout so
        that later fits compile nothing."""
        cache = self._compiled
        if layout not in cache:
            cache[layout] = compile_training(
                self.model, self.jit_steps(), layout, members=self.members is not None
            )
        return cache[layout]

    def evaluation(
        self,
        layout: Layout,
        name: str,
        buffers: list[Any],
        args: tuple[Any, ...],
        ema: bool = False,
    ) -> Evaluation:
        """The compiled `test_step` or `pred_step` (`name`) for states of `layout`, built
        once per layout (and per `ema`: on the EMA of the weights or not). `args` are one
        step's arguments after the states; their shapes and dtypes are used once, to find
        the leaves the step changes."""
        cache = self._compiled
        key = (layout, name, ema)
        if key not in cache:
            steps = self.jit_steps()
            carried = carried_leaves(steps, name, layout, buffers, args, ema)
            cache[key] = compile_evaluation(
                self.model, steps, name, layout, carried, members=self.members is not None
            )
        return cache[key]

    def initialize(self, batch: Any, class_weight: Any) -> States:
        """Run the model's init step on `batch` and commit the result."""
        model = self.model
        steps = self.jit_steps()
        strategy = strategy_of(model)
        states = strategy.put_states(model.states)
        batch = strategy.put_batch(batch, False)
        states = steps.jit(steps.init)(states, batch, class_weight)
        self.commit(states, initialized=True)
        return states


def _copied(states: States) -> States:
    """A copy of every array of `states` (one eager copy per leaf)."""
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, states)


def engine(model: Model) -> Engine:
    """The engine of `model`, created on first use."""
    found: Engine | None = vars(model).get(_ATTRIBUTE)
    if found is None:
        found = Engine(model)
        attach(model, found)
    return found


def known_initialized(model: Model) -> bool | None:
    """Whether `model`'s engine knows it is initialised (None: no engine, or unknown),
    without creating an engine."""
    found: Engine | None = vars(model).get(_ATTRIBUTE)
    return None if found is None else found.initialized


def attach(model: Model, found: Engine) -> None:
    """Make `found` the engine of `model` (a fresh model, or one that gets a new engine)."""
    object.__setattr__(model, _ATTRIBUTE, found)


def rebuild(cls: type[Model], fields: dict[str, Any], initialized: bool | None) -> Model:
    """A model of class `cls` with the given fields (unpickled, copied, re-laid-out; see
    `Model.__reduce__`). Its fresh engine keeps the one fact that is not a cache: whether
    it was initialised (None: unknown, found out on first use)."""
    model = object.__new__(cls)
    vars(model).update(fields)
    if initialized is not None:
        attach(model, Engine(model, initialized))
    return model


def fields_of(model: Model) -> dict[str, Any]:
    """The model's `__dict__` without its engine: what pickle and copies carry."""
    return {k: v for k, v in vars(model).items() if k != _ATTRIBUTE}
