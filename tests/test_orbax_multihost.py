"""Two processes on this machine (`jax.distributed` over the loopback address, CPU
collectives with gloo, 2 CPU devices each) train a model sharded with FSDP across both
and save it with `backend="orbax"`: each process writes only its own shards, nothing is
gathered, and the save loads onto other layouts (another strategy on both processes,
one device in a third process).

Run as a script, this file is one of those processes (see `_worker`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300.0  # generous: a loaded 2-core machine; a healthy run takes ~30 s
WIDTH = 256  # the hidden layers' width: their weights dominate the bytes saved


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 64)).astype(np.float32)
    return x, (x[:, :8].sum(axis=1) > 0).astype(np.int32)


def _model() -> Any:
    import equinox as eqx
    import jax
    import optax

    import eqx_elegy as elegy

    return elegy.Model(
        module=eqx.nn.MLP(64, 8, WIDTH, 2, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )


def _worker(process: int, port: int, root: str) -> None:
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import eqx_elegy as elegy

    assert elegy.initialize_distributed(f"127.0.0.1:{port}", 2, process)
    assert jax.device_count() == 4 and jax.local_device_count() == 2
    shared = Path(root)
    x, y = _data()
    model = _model().distributed(elegy.FSDP(min_size=0))
    weight = model.states.net_params.layers[1].weight
    assert not weight.is_fully_addressable  # sharded across the two processes
    checkpoint = elegy.callbacks.ModelCheckpoint(str(shared / "epoch{epoch}"), backend="orbax")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[checkpoint])
    model.save(shared / "direct", backend="orbax")
    params = jax.tree.leaves(elegy.gather_to_host(model.states.net_params))
    # Both processes load it again under another strategy (replicated on all 4 devices).
    replicated = _model().distributed(elegy.DataParallel())
    replicated.load(shared / "direct")
    again = jax.tree.leaves(elegy.gather_to_host(replicated.states.net_params))
    assert all(np.array_equal(a, b) for a, b in zip(params, again, strict=True))
    np.savez(shared / f"process{process}.npz", *params)
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bytes_under(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def test_two_processes_save_their_own_shards_and_the_save_loads_anywhere(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    procs = []
    deadline = time.monotonic() + TIMEOUT
    try:
        for i in range(2):
            with open(logs[i], "w") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, __file__, str(i), str(port), str(tmp_path)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        # Stop at the first failure: the other process would wait for its peer until
        # jax.distributed's own timeout.
        while any(p.poll() is None for p in procs) and all(p.poll() in (None, 0) for p in procs):
            assert time.monotonic() < deadline, f"the processes ran over {TIMEOUT} s"
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = [i for i, proc in enumerate(procs) if proc.returncode != 0]
    assert not failed, "\n".join(
        f"process {i} exited with {procs[i].returncode} (-9: killed after its peer failed):\n"
        f"{logs[i].read_text()}"
        for i in failed
    )
    results = [list(np.load(tmp_path / f"process{i}.npz").values()) for i in range(2)]
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)

    # The files: one manifest, written by process 0, and orbax's per-process data
    # directories (OCDBT), each holding about its process's half of the arrays.
    for name, epoch in (("direct", None), ("epoch1", 1), ("epoch2", 2)):
        save = tmp_path / name
        assert sorted(p.name for p in save.iterdir()) == ["manifest.json", "orbax"]
        manifest = json.loads((save / "manifest.json").read_text())
        assert (manifest["backend"], manifest["metadata"].get("epoch")) == ("orbax", epoch)
    shards = sorted((tmp_path / "direct" / "orbax").glob("ocdbt.process_*"))
    assert [p.name for p in shards] == ["ocdbt.process_0", "ocdbt.process_1"]
    # Parameters and both adam moments, float32; what is replicated (counts, keys) is
    # written once and is small next to this.
    total = 3 * sum(a.nbytes for a in results[0])
    written = [_bytes_under(p) for p in shards]
    assert all(0.35 * total < n < 0.65 * total for n in written), (written, total)
    assert not list(tmp_path.glob(".*"))  # no staging or set-aside directory is left

    # And a single-device model in this process loads it.
    single = _model()
    single.init(*(a[:2] for a in _data()))
    single.load(tmp_path / "direct")
    import jax

    for leaf, expected in zip(jax.tree.leaves(single.states.net_params), results[0], strict=True):
        np.testing.assert_array_equal(leaf, expected)
    assert not list(tmp_path.glob(".*"))


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
