import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import eqx_elegy as elegy


def test_defaults_are_none():
    states = elegy.States()
    assert len(states) == 5
    assert list(states) == ["rng", "net_params", "net_states", "metrics_states", "optimizer_states"]
    assert all(states[k] is None for k in states)
    assert "net_params" in states and "foo" not in states


def test_update_returns_new_and_keeps_old():
    states = elegy.States()
    new = states.update(net_params=jnp.ones(3), foo=1)
    assert states.net_params is None and "foo" not in states
    assert new["foo"] == 1 and new.net_params.shape == (3,)
    assert len(new) == 6


def test_maybe_update_only_fills_missing():
    states = elegy.States(net_params=1)
    new = states.maybe_update(net_params=2, net_states=3, extra=4)
    assert new.net_params == 1 and new.net_states == 3 and new.extra == 4


def test_missing_attribute_lists_keys():
    with pytest.raises(AttributeError, match=r"no key 'nett_params'.*net_params"):
        _ = elegy.States().nett_params


def test_pytree_roundtrip_through_transformations():
    states = elegy.States(net_params={"w": jnp.arange(3.0)}, rng=elegy.RNGSeq(0))
    leaves, treedef = jax.tree.flatten(states)
    assert jax.tree.unflatten(treedef, leaves).net_params["w"].tolist() == [0.0, 1.0, 2.0]
    out = jax.jit(lambda s: s.update(net_params={"w": s.net_params["w"] * 2}))(states)
    assert isinstance(out, elegy.States) and out.net_params["w"].tolist() == [0.0, 2.0, 4.0]
    assert eqx.filter_jit(lambda s: s)(states).net_params["w"].shape == (3,)
    batched = jax.vmap(lambda w: elegy.States(net_params=w))(jnp.ones((4, 2)))
    assert batched.net_params.shape == (4, 2)

    def body(s, _):
        return s.update(net_params=s.net_params + 1), None

    final, _ = jax.lax.scan(body, elegy.States(net_params=jnp.zeros(())), None, length=3)
    assert float(final.net_params) == 3.0


def test_rng_is_pure_and_deterministic():
    rng = elegy.RNGSeq(0)
    k1, rng1 = rng.next()
    k2, _ = rng.next()
    k3, _ = rng1.next()
    assert (jax.random.key_data(k1) == jax.random.key_data(k2)).all()
    assert not (jax.random.key_data(k1) == jax.random.key_data(k3)).all()
    assert int(rng.count) == 0 and int(rng1.count) == 1
    keys, _ = rng.split(3)
    assert keys.shape == (3,)


def test_repr_counts_leaves():
    states = elegy.States(net_params={"w": jnp.ones(2), "b": jnp.ones(())}, step=3)
    assert repr(states) == (
        "States(rng=None, net_params=<dict: 2 leaves>, net_states=None, metrics_states=None, "
        "optimizer_states=None, step=<int: 1 leaves>)"
    )


def test_rng_counter_is_uint32():
    """A fixed dtype: a restored or re-created sequence hits the same compiled step."""
    rng = elegy.RNGSeq(0)
    assert rng.count.dtype == jnp.uint32 and rng.next()[1].count.dtype == jnp.uint32


def test_missing_dunder_and_half_built_lookups_raise_attribute_error():
    """Protocol probes (`__array__`, `__deepcopy__`, ...) get a plain AttributeError, and so
    does any lookup on a `States` whose data is not set yet (as during unpickling)."""
    with pytest.raises(AttributeError) as info:
        _ = elegy.States().__array_interface__
    assert str(info.value) == "__array_interface__"
    with pytest.raises(AttributeError, match=r"no key 'net_params'; existing keys: \[\]"):
        _ = elegy.States.__new__(elegy.States).net_params
