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
from typing import TYPE_CHECKING, Any

from ._jit import (
    Compiled,
    Evaluation,
    JitSteps,
    Layout,
    carried_leaves,
    compile_evaluation,
    compile_training,
    flatten_states_on_host,
)
from ._states import States

if TYPE_CHECKING:
    from ._model import Model
    from .callbacks import History

_ATTRIBUTE = "_engine"


class Engine:
    """The runtime side of one model (see the module docstring).

    Attributes read and set by the loop and by callbacks (through the model's public
    properties): `initialized` (None until known: then the model's states decide),
    `history`, `stop_training` and `resume_at` (an `(epoch, step)` that the next fit
    starts at instead of its `initial_epoch`, set by `BackupAndRestore`).
    """

    __slots__ = (
        "_model",
        "initialized",
        "history",
        "stop_training",
        "resume_at",
        "_steps",
        "_compiled",
        "_flat",
    )

    def __init__(self, model: Model, initialized: bool | None = None):
        self._model = weakref.ref(model)
        self.initialized = initialized
        self.history: History | None = None
        self.stop_training = False
        self.resume_at: tuple[int, int] | None = None
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

    # ------------------------------------------------------------------ compiled steps

    def jit_steps(self) -> JitSteps:
        """`model.jit_step()`, built once."""
        if self._steps is None:
            self._steps = self.model.jit_step()
        return self._steps

    def flat_states(self) -> tuple[list[Any], Layout]:
        """The model's states as the flat buffers the compiled steps take (placed by the
        model's strategy), flattened once per states object: evaluate and predict must
        not spend a small model's whole evaluation time packing the same states again."""
        model = self.model
        flat = self._flat
        if flat is not None and flat[0] is model.states:
            return flat[1], flat[2]
        states = model.states
        if model.strategy is not None:
            states = model.strategy.put_states(states)
        leaves, layout = flatten_states_on_host(states, pack=model.strategy is None)
        self._flat = (model.states, leaves, layout)
        return leaves, layout

    def training(self, layout: Layout) -> Compiled:
        """The compiled training steps for states of `layout`, built once per layout so
        that later fits compile nothing."""
        cache = self._compiled
        if layout not in cache:
            cache[layout] = compile_training(self.model, self.jit_steps(), layout)
        return cache[layout]

    def evaluation(
        self, layout: Layout, name: str, buffers: list[Any], args: tuple[Any, ...]
    ) -> Evaluation:
        """The compiled `test_step` or `pred_step` (`name`) for states of `layout`, built
        once per layout. `args` are one step's arguments after the states; their shapes
        and dtypes are used once, to find the leaves the step changes."""
        cache = self._compiled
        if (layout, name) not in cache:
            steps = self.jit_steps()
            carried = carried_leaves(steps, name, layout, buffers, args)
            cache[layout, name] = compile_evaluation(self.model, steps, name, layout, carried)
        return cache[layout, name]

    def initialize(self, batch: Any, class_weight: Any) -> States:
        """Run the model's init step on `batch` and commit the result."""
        model = self.model
        steps = self.jit_steps()
        states = model.states
        if model.strategy is not None:
            states = model.strategy.put_states(states)
            batch = model.strategy.put_batch(batch, False)
        states = steps.jit(steps.init)(states, batch, class_weight)
        self.commit(states, initialized=True)
        return states


def engine(model: Model) -> Engine:
    """The engine of `model`, created on first use."""
    found: Engine | None = vars(model).get(_ATTRIBUTE)
    if found is None:
        found = Engine(model)
        object.__setattr__(model, _ATTRIBUTE, found)
    return found


def known_initialized(model: Model) -> bool | None:
    """Whether `model`'s engine knows it is initialised (None: no engine, or unknown),
    without creating an engine."""
    found: Engine | None = vars(model).get(_ATTRIBUTE)
    return None if found is None else found.initialized


def attach(model: Model, initialized: bool | None) -> None:
    """Give a model rebuilt from its fields (unpickled, copied, re-laid-out) a fresh
    engine that keeps the one fact that is not a cache: whether it was initialised."""
    object.__setattr__(model, _ATTRIBUTE, Engine(model, initialized))


def fields_of(model: Model) -> dict[str, Any]:
    """The model's `__dict__` without its engine: what pickle and copies carry."""
    return {k: v for k, v in vars(model).items() if k != _ATTRIBUTE}
