"""`Model.save` / `Model.load`: round trips, the manifest, refusals with clear errors, and
saves that survive a process killed while saving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqx_elegy as elegy
from eqx_elegy._checkpoint import CheckpointError, read_manifest

ROOT = Path(__file__).resolve().parent.parent


class Net(eqx.Module):
    linear: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self, key, width=8):
        k1, k2 = jax.random.split(key)
        self.linear = eqx.nn.Linear(4, width, key=k1)
        self.bn = eqx.nn.BatchNorm(width, axis_name="batch", mode="ema")
        self.head = eqx.nn.Linear(width, 3, key=k2)

    def __call__(self, x, state):
        h, state = self.bn(jax.nn.relu(self.linear(x)), state)
        return self.head(h), state


def build(seed=0, width=8, optimizer=None):
    return elegy.Model(
        module=Net(jax.random.key(seed), width),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optimizer or optax.adam(1e-2),
        seed=seed,
    )


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)


def host_leaves(states):
    """Every leaf as numpy, typed keys as their key data, for exact comparison."""
    return [
        np.asarray(jax.random.key_data(a))
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
        else np.asarray(a)
        for a in jax.tree.leaves(states)
    ]


def assert_same_states(a, b):
    # Paths, not treedefs: a StateIndex's marker differs between two builds of a model.
    def paths(tree):
        return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]

    assert paths(a) == paths(b)
    for left, right in zip(host_leaves(a), host_leaves(b), strict=True):
        assert left.dtype == right.dtype and left.shape == right.shape
        np.testing.assert_array_equal(left, right)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for two epochs (BatchNorm state, adam, metrics) and its save."""
    model = build()
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("ckpt") / "model"
    model.save(path)
    return model, path


def test_round_trip_restores_every_leaf(trained):
    model, path = trained
    fresh = build(seed=0)
    assert not np.array_equal(
        np.asarray(fresh.states.optimizer_states[0].count),
        np.asarray(model.states.optimizer_states[0].count),
    )
    fresh.load(path)
    assert_same_states(fresh.states, model.states)
    assert isinstance(fresh.states.net_states, eqx.nn.State)
    assert jax.dtypes.issubdtype(fresh.states.rng.key.dtype, jax.dtypes.prng_key)
    assert fresh.initialized
    x, y = data()
    assert fresh.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


class Subclassed(elegy.Model):
    pass


def test_load_on_the_class_says_how_to_load(trained):
    """Keras' habit, `Model.load(path)` on the class, gets an error that says to build the
    model first; the unbound call with a model first (`Model.load(model, path)`) works."""
    model, path = trained
    for cls in (elegy.Model, Subclassed):
        with pytest.raises(TypeError) as error:
            cls.load(path)
        assert str(error.value) == (
            f"{cls.__name__}.load(path) is called on the class, but it loads into a model: "
            f"build the model as it was built before it was saved (same class, module, "
            f"loss, metrics and optimizer), then call model.load(path). A save holds the "
            f"states only, never code, so it cannot rebuild the model itself."
        )
    with pytest.raises(TypeError, match=r"^Model.load\(path\) is called on the class"):
        elegy.Model.load(path=path)
    assert elegy.Model.load.__doc__ == elegy.Model(module=None).load.__doc__
    assert elegy.Model.load.__doc__.startswith("Load a save")
    fresh = build(seed=0)
    elegy.Model.load(fresh, path)
    assert_same_states(fresh.states, model.states)


def test_manifest_lists_versions_class_and_leaves(trained):
    model, path = trained
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "eqx_elegy.checkpoint"
    assert set(manifest["versions"]) >= {"eqx_elegy", "jax", "equinox"}
    assert manifest["versions"]["jax"] == jax.__version__
    assert manifest["model_class"] == "eqx_elegy._model.Model"
    leaves = {
        leaf["path"]: (leaf["shape"], leaf["dtype"])
        for entry in manifest["entries"]
        for leaf in entry["leaves"]
    }
    assert leaves["net_params.linear.weight"] == ([8, 4], "float32")
    assert leaves["net_params.head.bias"] == ([3], "float32")
    assert leaves["rng.key"] == ([], "key<fry>")
    assert leaves["rng.count"] == ([], "uint32")
    # one manifest line per array leaf of the states, computed independently
    expected = [a for a in jax.tree.leaves(model.states) if hasattr(a, "shape")]
    assert len(leaves) == len(expected)
    assert sorted(np.prod(s, dtype=int) for s, _ in leaves.values()) == sorted(
        a.size for a in expected
    )
    for entry in manifest["entries"]:
        if entry["file"] is not None:
            assert (path / entry["file"]).read_bytes()[:6] == b"\x93NUMPY"


def test_mismatched_model_is_refused_and_left_untouched(trained):
    _, path = trained
    wider = build(width=16)
    before = wider.states
    with pytest.raises(CheckpointError) as info:
        wider.load(path)
    message = str(info.value)
    assert "does not fit Model's states" in message
    assert (
        "net_params.linear.weight: the model has float32[16, 4], the save float32[8, 4]" in message
    )
    assert "Build the model the same way" in message
    assert wider.states is before

    other_optimizer = build(optimizer=optax.sgd(0.1))
    with pytest.raises(CheckpointError, match=r"optimizer_states.*in the save, not in the model"):
        other_optimizer.load(path)

    half = elegy.Model(
        module=jax.tree.map(
            lambda a: a.astype(jnp.float16) if eqx.is_inexact_array(a) else a,
            Net(jax.random.key(0)),
        ),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-2),
    )
    with pytest.raises(
        CheckpointError, match=r"model has float16\[8, 4\], the save float32\[8, 4\]"
    ):
        half.load(path)


def test_low_level_model_must_be_initialised_before_load(tmp_path):
    class Linear(elegy.Model):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            w = jnp.zeros((4, 3)) if initializing else states.net_params
            loss = jnp.mean((x @ w - jax.nn.one_hot(y_true, 3)) ** 2)
            return loss, {"loss": loss}, states.update(net_params=w)

    x, y = data()
    model = Linear(optimizer=optax.sgd(0.1))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "low")
    fresh = Linear(optimizer=optax.sgd(0.1))
    with pytest.raises(CheckpointError, match=r"no net_params yet: call model\.init\(x, y\)"):
        fresh.load(tmp_path / "low")
    fresh.init(x, y)
    fresh.load(tmp_path / "low")
    np.testing.assert_array_equal(fresh.states.net_params, model.states.net_params)


def copy_save(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())
    return dst


def test_corrupt_manifest_gives_a_clear_error(trained, tmp_path):
    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    (broken / "manifest.json").write_text('{"format": "eqx_elegy.checkpoint", "format_vers')
    model = build()
    before = model.states
    with pytest.raises(CheckpointError, match=r"manifest\.json is not a valid .* not valid JSON"):
        model.load(broken)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["entries"][1]["sha256"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"entry 1 is not \{key, file, sha256, leaves\}"):
        model.load(broken)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["entries"][1]["file"] = "../../etc/passwd"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="entry 1"):
        model.load(broken)
    (broken / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CheckpointError, match="'format' is not 'eqx_elegy.checkpoint'"):
        model.load(broken)
    assert model.states is before


def test_corrupt_or_missing_leaf_file_gives_a_clear_error(trained, tmp_path):
    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    file = next(broken.glob("*net_params.eqx"))
    data_bytes = bytearray(file.read_bytes())
    data_bytes[-3] ^= 0xFF
    file.write_bytes(bytes(data_bytes))
    model = build()
    before = model.states
    with pytest.raises(CheckpointError, match=r"net_params\.eqx does not match the checksum"):
        model.load(broken)
    file.write_bytes(bytes(data_bytes[: len(data_bytes) // 2]))
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        model.load(broken)
    file.unlink()
    with pytest.raises(CheckpointError, match=r"net_params\.eqx is missing"):
        model.load(broken)
    assert model.states is before
    with pytest.raises(CheckpointError, match="No save found"):
        model.load(tmp_path / "nowhere")


def test_loading_never_unpickles(trained, tmp_path):
    """A leaf file replaced by a pickled object array (its checksum updated too) is
    refused by numpy's `allow_pickle=False`; the payload never runs."""
    _, path = trained
    broken = copy_save(path, tmp_path / "evil")
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    file = next(broken.glob("*net_params.eqx"))
    with open(file, "wb") as f:
        np.save(f, np.array([Payload()], dtype=object), allow_pickle=True)
    manifest = json.loads((broken / "manifest.json").read_text())
    import hashlib

    for entry in manifest["entries"]:
        if entry["file"] == file.name:
            entry["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="it is corrupt"):
        build().load(broken)
    assert not marker.exists()


def test_weights_only(trained, tmp_path):
    model, path = trained
    model.save(tmp_path / "weights", weights_only=True)
    manifest = read_manifest(tmp_path / "weights")
    assert manifest["weights_only"] is True
    assert [e["key"] for e in manifest["entries"]] == ["net_params", "net_states"]

    fresh = build(seed=1)
    optimizer_before = fresh.states.optimizer_states
    fresh.load(tmp_path / "weights", weights_only=True)
    assert_same_states(fresh.states.net_params, model.states.net_params)
    assert_same_states(fresh.states.net_states, model.states.net_states)
    assert fresh.states.optimizer_states is optimizer_before

    with pytest.raises(CheckpointError, match="holds only the weights .* weights_only=True"):
        build().load(tmp_path / "weights")

    partial = build(seed=2)
    partial.load(path, weights_only=True)  # the weights out of a full save
    assert_same_states(partial.states.net_params, model.states.net_params)


def test_overwrite_and_refuse_foreign_directory(trained, tmp_path):
    model, _ = trained
    target = tmp_path / "ckpt"
    build(seed=3).save(target)
    model.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # nothing left beside it
    fresh = build(seed=4)
    fresh.load(target)
    assert_same_states(fresh.states, model.states)

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(CheckpointError, match="is not an eqx_elegy save .* refusing to replace"):
        model.save(foreign)
    assert (foreign / "cat.jpg").read_bytes() == b"meow"


def test_load_recovers_from_a_crash_between_the_renames(trained, tmp_path):
    """State left by a crash after the old save was set aside and before the new one was
    renamed in: `load` finds the previous save, and the next save cleans up."""
    model, path = trained
    copy_save(path, tmp_path / ".ckpt.previous")
    (tmp_path / ".ckpt.saving").mkdir()
    (tmp_path / ".ckpt.saving" / "00_metrics_states.eqx").write_bytes(b"half")
    fresh = build(seed=5)
    fresh.load(tmp_path / "ckpt")
    assert_same_states(fresh.states, model.states)
    build(seed=6).save(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


CHILD = r"""
import sys, time
import jax, equinox as eqx
import eqx_elegy as elegy
import eqx_elegy._checkpoint as ck

path, phase = sys.argv[1], sys.argv[2]
elegy.Model(module=eqx.nn.Linear(3, 2, key=jax.random.key(0))).save(path)
print("first save done", flush=True)

def stop():
    print("stopping", flush=True)
    time.sleep(120)

if phase == "writing":
    fsync = ck._fsync
    def slow_fsync(p):
        fsync(p)
        if str(p).endswith(".eqx"):
            stop()
    ck._fsync = slow_fsync
else:
    rename = ck._rename
    def slow_rename(src, dst):
        rename(src, dst)
        stop()
    ck._rename = slow_rename
big = eqx.nn.Linear(3, 2, key=jax.random.key(1))
elegy.Model(module=big).save(path)
print("second save done", flush=True)
"""


@pytest.mark.parametrize("phase", ["writing", "renaming"])
def test_sigkill_while_saving_keeps_the_previous_save(tmp_path, phase):
    target = tmp_path / "ckpt"
    with subprocess.Popen(
        [sys.executable, "-W", "error", "-c", CHILD, str(target), phase],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith("stopping"):
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=60)
    assert lines == ["first save done", "stopping"], lines
    assert child.returncode == -signal.SIGKILL

    leftovers = sorted(p.name for p in tmp_path.iterdir())
    if phase == "writing":
        assert leftovers == [".ckpt.saving", "ckpt"]
    else:  # the old save was set aside, the new one not yet renamed in
        assert leftovers == [".ckpt.previous", ".ckpt.saving"]

    model = elegy.Model(module=eqx.nn.Linear(3, 2, key=jax.random.key(7)))
    model.load(target)
    first = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    np.testing.assert_array_equal(model.states.net_params.weight, first.weight)
    np.testing.assert_array_equal(model.states.net_params.bias, first.bias)

    model.save(target)  # and saving again tidies up what the crash left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_extra_keys_bfloat16_and_python_numbers_round_trip(tmp_path):
    def with_extra(step, value):
        model = elegy.Model(module=eqx.nn.Linear(2, 2, key=jax.random.key(0)))
        extra = {"step": step, "half": jnp.full((3,), value, jnp.bfloat16), "flag": np.bool_(1)}
        return eqx.tree_at(lambda m: m.states, model, model.states.update(extra=extra))

    with_extra(7, 1.5).save(tmp_path / "extra")
    fresh = with_extra(0, 0.0)
    fresh.load(tmp_path / "extra")
    extra = fresh.states.extra
    assert extra["step"] == 7 and type(extra["step"]) is int
    assert extra["half"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(extra["half"], np.float32), [1.5, 1.5, 1.5])
    assert extra["flag"] == np.bool_(1)

    with pytest.raises(
        CheckpointError, match=r"extra\['step'\]: the model has float\[\], the save int"
    ):
        mismatched = with_extra(0, 0.0)
        mismatched = eqx.tree_at(
            lambda m: m.states, mismatched, mismatched.states.update(extra={**extra, "step": 1.0})
        )
        mismatched.load(tmp_path / "extra")


def test_states_with_donated_buffers_are_not_saved(trained, tmp_path):
    model, _ = trained
    target = tmp_path / "ckpt"
    model.save(target)
    broken = build()
    states = jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, model.states)
    states.net_params.head.weight.delete()  # what buffer donation does to a stale reference
    broken = eqx.tree_at(lambda m: m.states, broken, states)
    with pytest.raises(CheckpointError, match=r"donated .*net_params\.head\.weight.*Nothing was"):
        broken.save(target)
    fresh = build()
    fresh.load(target)
    assert_same_states(fresh.states, model.states)


def test_metadata_is_stored_in_the_manifest(tmp_path):
    from eqx_elegy._checkpoint import save

    model = elegy.Model(module=eqx.nn.Linear(2, 2, key=jax.random.key(0)))
    save(model, tmp_path / "ckpt", metadata={"epoch": 3, "val_loss": 0.25})
    assert read_manifest(tmp_path / "ckpt")["metadata"] == {"epoch": 3, "val_loss": 0.25}
    with pytest.raises(TypeError, match="not JSON serializable"):
        save(model, tmp_path / "other", metadata={"epoch": object()})
    assert not (tmp_path / "other").exists() and not (tmp_path / ".other.saving").exists()
