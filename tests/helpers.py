"""Shared test data and models: small and deterministic."""

import struct
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

import eqx_elegy as elegy
import eqx_elegy._steps


def digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    return (x, y) if n is None else (x[:n], y[:n])


def mlp(seed: int = 0, width: int = 32) -> eqx.nn.MLP:
    return eqx.nn.MLP(64, 10, width, 1, key=jax.random.key(seed))


def mlp_model(**kwargs) -> elegy.Model:
    kwargs.setdefault("optimizer", optax.adam(1e-2))
    return elegy.Model(
        module=mlp(),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        **kwargs,
    )


class CountCompiles:
    """Counts XLA compilations (backend compiles) inside a `with` block."""

    def __enter__(self) -> "CountCompiles":
        self.count = 0

        def listener(name: str, duration: float, **kwargs: object) -> None:
            if name == "/jax/core/compile/backend_compile_duration":
                self.count += 1

        self._listener = listener
        jax.monitoring.register_event_duration_secs_listener(listener)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


def tensorboard_scalars(directory: Path) -> dict[str, dict[int, float]]:
    """The scalars of the TensorBoard event files in `directory`, as {tag: {step: value}}
    (TFRecord framing: length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event  # pyright: ignore[reportAttributeAccessIssue]

    out: dict[str, dict[int, float]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            offset += 12
            event = Event.FromString(data[offset : offset + length])
            offset += length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def counting_output_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the step output checks (`_steps.check_output`) by the method they check."""
    calls: list[str] = []
    check_output = eqx_elegy._steps.check_output

    def counted(owner: str, method: str, alias: str, value: Any, **kwargs: Any) -> None:
        calls.append(method)
        check_output(owner, method, alias, value, **kwargs)

    monkeypatch.setattr(eqx_elegy._steps, "check_output", counted)
    return calls
