"""Weight penalties over a model's parameters, with Keras' formulas and defaults."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ..losses._loss import snake_case


def _check_factor(who: str, what: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{who}: {what}={value!r} must be a float >= 0.")
    return float(value)


class Regularizer(eqx.Module):
    """A penalty `regularizer(net_params) -> scalar` summed over parameter arrays.

    It reads the floating-point array leaves of `net_params` (a module, or any
    pytree), or those of them for which `filter(leaf)` is True, e.g.
    `filter=lambda w: w.ndim > 1` to leave biases alone. Put it in `loss=` next
    to the data loss: it is logged as `<name>_loss` (`l2_loss`) and added to the
    total. The penalty is computed in float32 whatever the parameters' dtype.

    Parameters frozen by the model's `trainable=` filter are skipped (as in Keras, where
    only trainable weights are regularised) unless `include_frozen=True`.
    """

    # init=False: set by this class's __init__, which subclasses inherit or call.
    name: str = eqx.field(static=True, init=False)
    filter: Callable[[Array], bool] | None = eqx.field(static=True, init=False)
    include_frozen: bool = eqx.field(static=True, init=False)

    def __init__(
        self,
        *,
        filter: Callable[[Array], bool] | None = None,
        name: str | None = None,
        include_frozen: bool = False,
    ):
        if filter is not None and not callable(filter):
            raise TypeError(
                f"{type(self).__name__}: `filter` must be a callable leaf -> bool, "
                f"got {type(filter).__name__}."
            )
        self.filter = filter
        self.include_frozen = bool(include_frozen)
        self.name = snake_case(type(self).__name__) if name is None else name

    @abc.abstractmethod
    def penalty(self, leaf: Array) -> Array:
        """The penalty of one float32 parameter array."""

    def __call__(self, net_params: PyTree) -> Array:
        total = jnp.zeros((), jnp.float32)
        for leaf in jax.tree.leaves(net_params):
            if eqx.is_inexact_array(leaf) and (self.filter is None or self.filter(leaf)):
                total = total + self.penalty(leaf.astype(jnp.float32))
        return total


class L1(Regularizer):
    """`l1 * sum(|w|)`; Keras' default factor 0.01."""

    l1: float = eqx.field(static=True)

    def __init__(
        self,
        l1: float = 0.01,
        *,
        filter: Callable[[Array], bool] | None = None,
        name: str | None = None,
        include_frozen: bool = False,
    ):
        self.l1 = _check_factor("L1", "l1", l1)
        super().__init__(filter=filter, name=name, include_frozen=include_frozen)

    def penalty(self, leaf: Array) -> Array:
        return self.l1 * jnp.sum(jnp.abs(leaf))


class L2(Regularizer):
    """`l2 * sum(w ** 2)`; Keras' default factor 0.01 (no 1/2 factor)."""

    l2: float = eqx.field(static=True)

    def __init__(
        self,
        l2: float = 0.01,
        *,
        filter: Callable[[Array], bool] | None = None,
        name: str | None = None,
        include_frozen: bool = False,
    ):
        self.l2 = _check_factor("L2", "l2", l2)
        super().__init__(filter=filter, name=name, include_frozen=include_frozen)

    def penalty(self, leaf: Array) -> Array:
        return self.l2 * jnp.sum(jnp.square(leaf))


class L1L2(Regularizer):
    """`l1 * sum(|w|) + l2 * sum(w ** 2)`; Keras' defaults are both 0."""

    l1: float = eqx.field(static=True)
    l2: float = eqx.field(static=True)

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        *,
        filter: Callable[[Array], bool] | None = None,
        name: str | None = None,
        include_frozen: bool = False,
    ):
        self.l1 = _check_factor("L1L2", "l1", l1)
        self.l2 = _check_factor("L1L2", "l2", l2)
        super().__init__(filter=filter, name=name, include_frozen=include_frozen)

    def penalty(self, leaf: Array) -> Array:
        return self.l1 * jnp.sum(jnp.abs(leaf)) + self.l2 * jnp.sum(jnp.square(leaf))
