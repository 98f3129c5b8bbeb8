"""Two processes on this machine, joined by `jax.distributed` over the loopback address
with CPU collectives (gloo), each holding 2 CPU devices: training must give both
processes the parameters of a single-process run.

Run as a script, this file is one of those processes (see `_worker`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BATCH = 32
TIMEOUT = 300.0  # generous: a loaded 2-core machine; a healthy run takes ~30 s


def _data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16).astype(np.float32), digits.target.astype(np.int32)


def _model() -> Any:
    import equinox as eqx
    import jax
    import optax

    import eqx_elegy as elegy

    return elegy.Model(
        module=eqx.nn.MLP(64, 10, 32, 2, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-2),
    )


def _local_share(a: np.ndarray, process: int, count: int) -> np.ndarray:
    """The rows of `a` that `process` feeds when every global batch of `BATCH` rows is
    split into `count` consecutive shares."""
    steps = len(a) // BATCH
    return a[: steps * BATCH].reshape(steps, count, BATCH // count, *a.shape[1:])[:, process]


def _runs(x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, Any]]:
    """The fit arguments of the runs compared, by strategy."""
    return {
        # Every process passes all the data; 198 examples, so the last batch (6) does not
        # split over 4 devices and is replicated.
        "data_parallel": dict(x=x[:198], y=y[:198], epochs=2),
        # Each process passes its half of every batch; parameters sharded over processes.
        "fsdp_process_local": dict(x=x[:192], y=y[:192], epochs=1, shuffle=False),
    }


def _worker(process: int, port: int, out: str) -> None:
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    import eqx_elegy as elegy

    assert elegy.initialize_distributed(f"127.0.0.1:{port}", 2, process)
    assert jax.device_count() == 4 and jax.local_device_count() == 2
    x, y = _data()
    results: dict[str, np.ndarray] = {"main": np.asarray(elegy.is_main_process())}
    for name, kwargs in _runs(x, y).items():
        kwargs = dict(kwargs)
        batch = BATCH
        if name == "fsdp_process_local":
            strategy: Any = elegy.FSDP(min_size=0, process_local=True)
            kwargs["x"] = _local_share(kwargs["x"], process, 2).reshape(-1, 64)
            kwargs["y"] = _local_share(kwargs["y"], process, 2).reshape(-1)
            batch = BATCH // 2
        else:
            strategy = elegy.DataParallel()
        model = _model().distributed(strategy)
        if name == "fsdp_process_local":
            # Parameters sharded across the processes: the checkpoint gathers them, and
            # process 0 alone writes it, the CSV rows and the progress output.
            shared = Path(out).parent
            kwargs["callbacks"] = [
                elegy.callbacks.ModelCheckpoint(str(shared / "checkpoint")),
                elegy.callbacks.CSVLogger(shared / "log.csv"),
            ]
            kwargs["verbose"] = 2
        else:
            kwargs["verbose"] = 0
        history = model.fit(batch_size=batch, **kwargs)
        results[f"{name}/loss"] = np.asarray(history.history["loss"])
        params = elegy.gather_to_host(model.states.net_params)
        for i, leaf in enumerate(jax.tree.leaves(params)):
            results[f"{name}/param{i}"] = leaf
        if name == "data_parallel":
            results["predict"] = model.predict(x[:50], batch_size=20)
    np.savez(out, **results)
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _references() -> dict[str, np.ndarray]:
    import jax

    x, y = _data()
    expected: dict[str, np.ndarray] = {}
    for name, kwargs in _runs(x, y).items():
        model = _model()
        history = model.fit(batch_size=BATCH, verbose=0, **kwargs)
        expected[f"{name}/loss"] = np.asarray(history.history["loss"])
        for i, leaf in enumerate(jax.tree.leaves(model.states.net_params)):
            expected[f"{name}/param{i}"] = np.asarray(leaf)
        if name == "data_parallel":
            expected["predict"] = model.predict(x[:50], batch_size=20)
    return expected


def test_two_processes_train_like_one(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    procs = []
    deadline = time.monotonic() + TIMEOUT
    try:
        for i in range(2):
            with open(logs[i], "w") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, __file__, str(i), str(port), str(outs[i])],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        expected = _references()  # while the two processes run
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
    results = [dict(np.load(out)) for out in outs]

    assert [bool(r["main"]) for r in results] == [True, False]
    assert "Epoch 1/1" in logs[0].read_text() and "Epoch 1/1" not in logs[1].read_text()
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2  # a header, one epoch
    saved = _model()
    saved.load(tmp_path / "checkpoint")
    import jax

    for i, leaf in enumerate(jax.tree.leaves(saved.states.net_params)):
        np.testing.assert_array_equal(leaf, results[0][f"fsdp_process_local/param{i}"])
    assert set(results[0]) == set(expected) | {"main"}
    for key, value in expected.items():
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
        np.testing.assert_allclose(results[0][key], value, rtol=1e-5, atol=1e-5, err_msg=key)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
