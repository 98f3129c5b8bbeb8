"""`elegy.States` as documented: a Mapping with attribute access, `update` and
`maybe_update` chains that return new States, and an `RNGSeq` threaded through it."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from typing_extensions import assert_type

import eqx_elegy as elegy


def chains() -> elegy.States:
    states = elegy.States()
    new = (
        states.update(net_params={"w": jnp.ones(3)})
        .update(step=jnp.zeros((), jnp.int32))
        .maybe_update(net_params=None, rng=elegy.RNGSeq(0))
    )
    assert_type(new, elegy.States)
    mapping: Mapping[str, Any] = new
    assert "step" in mapping and len(mapping) == 6
    assert new.net_params is new["net_params"]
    assert states.net_params is None  # the original is unchanged
    return new


def draw(states: elegy.States) -> tuple[jax.Array, elegy.States]:
    rng: elegy.RNGSeq = states.rng
    key, rng = rng.next()
    keys, rng = rng.split(4)
    assert_type(rng, elegy.RNGSeq)
    sample = jax.random.normal(key, (4,)) + jax.vmap(lambda k: jax.random.uniform(k))(keys)
    return sample, states.update(rng=rng)


def through_jit(states: elegy.States) -> elegy.States:
    @jax.jit
    def bump(s: elegy.States) -> elegy.States:
        return s.update(step=s["step"] + 1)

    return bump(states)


if __name__ == "__main__":
    s = chains()
    sample, s = draw(s)
    assert sample.shape == (4,)
    assert int(through_jit(s).step) == 1
