"""`Model(remat=True)`: gradient checkpointing of the module's forward pass.

Under `jax.checkpoint` a function keeps only its inputs for the backward pass and
recomputes what it needs there. Checkpointing the whole forward pass as one region would
save nothing: the backward pass would recompute every activation and hold them all
again. So, as Keras' `RematScope(mode="full")` does for each layer, each submodule that
the module calls directly (the blocks of a network: the entries of a list of layers, the
fields that hold modules) is checkpointed on its own: between blocks only their inputs
are kept, and a block's internal activations live only while its own gradient is
computed. A module with no submodules is checkpointed as a whole.

On CPU, XLA merges the recomputation back into the forward pass, so the memory drop shows
on accelerators (see benchmarks/bench_remat.py); the gradients are the same everywhere.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax


def _call(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return module(*args, **kwargs)


class Rematerialised(eqx.nn.StatefulLayer):
    """A submodule whose calls run under `eqx.filter_checkpoint`; other attributes are
    read from the submodule, and it is stateful when the submodule is (as
    `eqx.nn.Sequential` asks), so the parent module's code works unchanged."""

    inner: Any

    def is_stateful(self) -> bool:
        inner = self.inner
        return isinstance(inner, eqx.nn.StatefulLayer) and inner.is_stateful()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return eqx.filter_checkpoint(_call)(self.inner, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (during construction)
            raise AttributeError(name)
        return getattr(self.inner, name)


def _is_block(node: Any, root: Any) -> bool:
    return node is not root and isinstance(node, eqx.Module) and callable(node)


def rematerialised(module: Any) -> Any:
    """`module` with each directly held callable submodule checkpointed (see the module
    docstring), or the whole module when it holds none."""
    blocks = [
        node
        for node in jax.tree.leaves(module, is_leaf=lambda n: _is_block(n, module))
        if _is_block(node, module)
    ]
    if not blocks:
        # pyright reads StatefulLayer's abstract `__call__` as a dataclass field.
        return Rematerialised(inner=module)  # pyright: ignore[reportCallIssue]

    def where(m: Any) -> list[Any]:
        return [n for n in jax.tree.leaves(m, is_leaf=lambda n: _is_block(n, m)) if _is_block(n, m)]

    wrapped = [Rematerialised(inner=block) for block in blocks]  # pyright: ignore[reportCallIssue]
    return eqx.tree_at(where, module, wrapped)
