"""Peak memory of a training step with and without `Model(remat=True)`.

The model is a stack of residual feed-forward blocks (x + W2 gelu(W1 x), W1 widening 4x,
as in a transformer), the case gradient checkpointing is for: each block's internal
activations are 8x the size of its input. Without remat the backward pass needs every
block's activations at once; with remat only each block's input is kept and a block's
activations are recomputed while its gradient is taken.

Reported per setting: XLA's temporary buffer size for the compiled train step
(`compiled.memory_analysis().temp_size_in_bytes`: the step's working memory, the number
remat changes), the device's peak memory in use after the steps where the backend
reports it (`device.memory_stats()`, GPU/TPU; a fresh process per setting gives a clean
peak: `--only remat=True`), and the step time.

    python benchmarks/bench_remat.py            # 12 blocks of width 512, batch 256
    python benchmarks/bench_remat.py --quick    # a small smoke run
    python benchmarks/bench_remat.py --json out.json

On CPU these numbers say nothing about remat: XLA:CPU merges the recomputed forward pass
back into the first one (the compiled step has as many dot products with remat as
without), and it reports almost no temporary memory for this step (its buffers are
assigned inside nested computations). Measure on a GPU or TPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eqx_elegy as elegy  # noqa: E402


class Block(eqx.Module):
    up: eqx.nn.Linear
    down: eqx.nn.Linear

    def __init__(self, width: int, key: jax.Array):
        k1, k2 = jax.random.split(key)
        self.up = eqx.nn.Linear(width, 4 * width, key=k1)
        self.down = eqx.nn.Linear(4 * width, width, key=k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.down(jax.nn.gelu(self.up(x)))


class Net(eqx.Module):
    blocks: list[Block]
    head: eqx.nn.Linear

    def __init__(self, width: int, depth: int, key: jax.Array):
        keys = jax.random.split(key, depth + 1)
        self.blocks = [Block(width, k) for k in keys[:-1]]
        self.head = eqx.nn.Linear(width, 10, key=keys[-1])

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def measure(remat: bool, width: int, depth: int, batch: int, steps: int) -> dict[str, float]:
    model = elegy.Model(
        module=Net(width, depth, jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-3),
        remat=remat,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, width)).astype(np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int32)
    train = jax.jit(model.jit_step().train)
    compiled = train.lower(model.states, (x, y, None), None, 0, 0).compile()
    memory = compiled.memory_analysis()
    states = model.states
    _, states = compiled(states, (x, y, None), None, 0, 0)
    jax.block_until_ready(states)
    start = time.perf_counter()
    for i in range(steps):
        _, states = compiled(states, (x, y, None), None, 0, i)
    jax.block_until_ready(states)
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {
        "temp_mib": memory.temp_size_in_bytes / 2**20,
        "peak_mib": None if peak is None else peak / 2**20,
        "step_ms": (time.perf_counter() - start) / steps * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", choices=["remat=False", "remat=True"], help="one setting")
    args = parser.parse_args()
    width, depth, batch, steps = (64, 3, 16, 2) if args.quick else (512, 12, 256, 10)
    names = [args.only] if args.only else ["remat=False", "remat=True"]
    results = {name: measure(name == "remat=True", width, depth, batch, steps) for name in names}
    print(f"backend={jax.default_backend()} width={width} depth={depth} batch={batch}")
    for name, row in results.items():
        peak = "n/a" if row["peak_mib"] is None else f"{row['peak_mib']:.1f} MiB"
        print(
            f"{name:12s} temp memory {row['temp_mib']:9.1f} MiB   peak {peak}   "
            f"step {row['step_ms']:8.2f} ms"
        )
    if args.json:
        report = {"backend": jax.default_backend(), "results": results}
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
