"""`Model.save` / `Model.load`: round trips, the manifest, refusals with clear errors, and
saves that survive a process killed while saving."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import eqx_elegy as elegy
from eqx_elegy import _manifest, _savedir
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
    with pytest.raises(
        CheckpointError, match=r"manifest\.json is not valid JSON \(Unterminated string"
    ):
        model.load(broken)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["entries"][1]["sha256"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"entries\[1\] has no sha256"):
        model.load(broken)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["entries"][1]["file"] = "../../etc/passwd"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"entries\[1\]\.file '\.\./\.\./etc/passwd' is not"):
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
    with pytest.raises(CheckpointError, match=r"holds a object\[1\] leaf .* the file is corrupt"):
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
    (tmp_path / ".ckpt.saving" / ".eqx_elegy-saving").touch()  # how a save marks its staging
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
    model = elegy.Model(module=eqx.nn.Linear(2, 2, key=jax.random.key(0)))
    model.save(tmp_path / "ckpt", metadata={"epoch": 3, "val_loss": 0.25})
    assert read_manifest(tmp_path / "ckpt")["metadata"] == {"epoch": 3, "val_loss": 0.25}
    with pytest.raises(TypeError, match="not JSON serializable"):
        model.save(tmp_path / "other", metadata={"epoch": object()})
    assert not (tmp_path / "other").exists() and not (tmp_path / ".other.saving").exists()


# ---------------------------------------------------------------------------- file safety
# (issue 15): `save` replaces only one of its own saves; `load` reads only regular files
# inside the save directory; every malformed input is a CheckpointError.


def tree_snapshot(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every entry under `root` (not following links): kind, content or link target,
    modification time. Equal snapshots mean nothing there was written or removed."""
    out = {}
    for entry in [root, *sorted(root.rglob("*"))]:
        st = entry.lstat()
        if entry.is_symlink():
            out[str(entry)] = ("link", os.readlink(entry), st.st_mtime_ns)
        elif entry.is_dir():
            out[str(entry)] = ("dir", "", st.st_mtime_ns)
        elif stat.S_ISREG(st.st_mode):
            out[str(entry)] = ("file", entry.read_bytes(), st.st_mtime_ns)
        else:  # a named pipe: never opened (that would block)
            out[str(entry)] = ("special", "", st.st_mtime_ns)
    return out


def test_save_refuses_a_directory_whose_manifest_is_not_ours(trained, tmp_path):
    """A project directory that happens to hold a `manifest.json` is not a save."""
    model, _ = trained
    project = tmp_path / "app"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text('{"name": "My App"}')
    (project / "src" / "main.js").write_text("console.log(1)")
    (project / "README.md").write_text("# My App")
    before = tree_snapshot(tmp_path)
    with pytest.raises(CheckpointError) as info:
        model.save(project)
    assert str(info.value) == (
        f"{project} is not an eqx_elegy save (its manifest.json is not an eqx_elegy "
        "manifest: its 'format' is not 'eqx_elegy.checkpoint'); refusing to replace it. "
        "Nothing was written; pass a new directory path, or an empty one."
    )
    assert tree_snapshot(tmp_path) == before  # nothing written, not even a staging dir


def test_save_refuses_a_save_holding_files_of_someone_else(trained, tmp_path):
    model, _ = trained
    target = tmp_path / "ckpt"
    model.save(target)
    (target / "notes.txt").write_text("mine")
    before = tree_snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=r"it holds notes\.txt, which is not part of the"):
        model.save(target)
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("role", ["saving", "previous"])
def test_save_refuses_to_remove_a_foreign_sibling_it_would_use(trained, tmp_path, role):
    """The staging and set-aside directories next to a save are removed only when they
    are ours: a user's `.ckpt.saving` full of photos is left alone."""
    model, _ = trained
    sibling = tmp_path / f".ckpt.{role}"
    sibling.mkdir()
    (sibling / "cat.jpg").write_bytes(b"meow")
    before = tree_snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=rf"\.ckpt\.{role} .*refusing"):
        model.save(tmp_path / "ckpt")
    assert tree_snapshot(tmp_path) == before


def test_save_refuses_a_file_and_special_files(trained, tmp_path):
    model, _ = trained
    (tmp_path / "file").write_text("data")
    os.mkfifo(tmp_path / "fifo")
    before = tree_snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=r"file is a regular file, not a directory"):
        model.save(tmp_path / "file")
    with pytest.raises(CheckpointError, match=r"fifo is a named pipe \(FIFO\), not a directory"):
        model.save(tmp_path / "fifo")
    assert tree_snapshot(tmp_path) == before


def test_save_through_a_symlink_replaces_the_save_it_points_to(trained, tmp_path):
    """The link is resolved before anything is written: the save it points to is
    replaced, the link still points to it, and later saves keep working."""
    model, _ = trained
    real = tmp_path / "runs" / "ckpt"
    build(seed=3).save(real)
    link = tmp_path / "latest"
    link.symlink_to(real, target_is_directory=True)
    model.save(link)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert sorted(p.name for p in real.parent.iterdir()) == ["ckpt"]
    fresh = build(seed=4)
    fresh.load(link)
    assert_same_states(fresh.states, model.states)

    # a link to a directory that is not a save: refused, and nothing is written
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    (tmp_path / "to-photos").symlink_to(foreign)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    before = tree_snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=r"photos is not an eqx_elegy save \(it holds cat"):
        model.save(tmp_path / "to-photos")
    # a link loop cannot be resolved
    with pytest.raises(CheckpointError, match=r"loop cannot be resolved"):
        model.save(tmp_path / "loop")
    assert tree_snapshot(tmp_path) == before


def rewrite_manifest(directory: Path, change) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    change(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def fix_checksum(directory: Path, name: str) -> None:
    import hashlib

    digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()

    def change(manifest):
        for entry in manifest["entries"]:
            if entry["file"] == name:
                entry["sha256"] = digest

    rewrite_manifest(directory, change)


def params_file(directory: Path) -> str:
    return next(directory.glob("*net_params.eqx")).name


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        ("other model", "is a symbolic link, not a regular file; the save"),
        ("/proc/self/mem", "is a symbolic link, not a regular file"),
        ("dangling", "is a symbolic link, not a regular file"),
        ("fifo", r"is a named pipe \(FIFO\), not a regular file"),  # opening it would block
        ("directory", "is a directory, not a regular file"),
    ],
)
def test_load_refuses_a_leaf_file_that_is_not_a_regular_file(
    trained, tmp_path, replacement, message
):
    """A leaf file replaced by a link to another model's file (its checksum fixed in the
    manifest), a link to /proc/self/mem, a pipe or a directory is refused, not read."""
    _, path = trained
    other = tmp_path / "other"
    build(seed=9).save(other)
    broken = copy_save(path, tmp_path / "broken")
    name = params_file(broken)
    (broken / name).unlink()
    if replacement == "other model":
        (broken / name).symlink_to(other / params_file(other))
        fix_checksum(broken, name)
    elif replacement == "fifo":
        os.mkfifo(broken / name)
    elif replacement == "directory":
        (broken / name).mkdir()
    else:
        (broken / name).symlink_to(
            tmp_path / "nothing" if replacement == "dangling" else "/proc/self/mem"
        )
    fresh = build()
    before = fresh.states
    with pytest.raises(CheckpointError, match=rf"{name} {message}"):
        fresh.load(broken)
    assert fresh.states is before


def test_load_refuses_a_manifest_that_is_a_symlink_or_a_fifo(trained, tmp_path):
    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    outside = tmp_path / "outside.json"
    outside.write_bytes((broken / "manifest.json").read_bytes())
    (broken / "manifest.json").unlink()
    (broken / "manifest.json").symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"manifest\.json is a symbolic link, not a regular"):
        build().load(broken)
    (broken / "manifest.json").unlink()
    os.mkfifo(broken / "manifest.json")
    with pytest.raises(CheckpointError, match=r"manifest\.json is a named pipe \(FIFO\)"):
        build().load(broken)


def test_deeply_nested_manifest_is_a_checkpoint_error(trained, tmp_path):
    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    model = build()
    before = model.states
    (broken / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"not valid JSON \(nested too deeply\)"):
        model.load(broken)
    assert model.states is before


MALFORMED = [
    (lambda m: m.update(format_version=True), r"'format_version' is True, not an int"),
    (lambda m: m.update(format_version=0), r"format_version 0 is not one this eqx_elegy"),
    (lambda m: m.update(format_version=2), r"format_version 2 is not one this eqx_elegy"),
    (lambda m: m.update(weights_only="no"), r"'weights_only' is 'no', not a bool"),
    (lambda m: m.update(metadata=[1]), r"'metadata' is \[1\], not an object"),
    (lambda m: m.update(versions={"jax": 1}), r"'versions\.jax' is 1, not a string"),
    (lambda m: m["entries"].append(m["entries"][0]), r"entry '\w+' appears twice"),
    (lambda m: m["entries"][1].update(file="manifest.json"), r"entries\[1\]\.file 'manifest"),
    (lambda m: m["entries"][1].update(file=".."), r"entries\[1\]\.file '\.\.' is not a plain"),
    (lambda m: m["entries"][1].update(file="a/b.eqx"), r"entries\[1\]\.file 'a/b\.eqx'"),
    (lambda m: m["entries"][1].update(file="/etc/passwd"), r"entries\[1\]\.file '/etc"),
    (lambda m: m["entries"][1].update(file=7), r"entries\[1\]\.file is 7, not a string or null\."),
    (lambda m: m["entries"][1].update(sha256=5), r"\.sha256 is 5, not a string or null\."),
    (lambda m: (m.pop("metadata"), m.pop("versions")), r"manifest has no versions, metadata\."),
    (lambda m: m.update(zz=1, aa=2), r"manifest has unknown fields: aa, zz\."),
    (lambda m: m["entries"][1].update(sha256="xyz"), r"entries\[1\]\.sha256 is not 64 hex"),
    (
        lambda m: m["entries"][1]["leaves"][0].update(shape=[True]),
        r"entries\[1\]\.leaves\[0\]\.shape is \[True\], not a list of sizes",
    ),
    (
        lambda m: m["entries"][1]["leaves"][0].update(shape=[-1]),
        r"entries\[1\]\.leaves\[0\]\.shape is \[-1\], not a list of sizes",
    ),
    (lambda m: m["entries"][1].update(extra=1), r"entries\[1\] has unknown fields: extra"),
    (lambda m: m.update(entries={}), r"'entries' is \{\}, not a list"),
    (lambda m: m["entries"].__setitem__(0, 3), r"entries\[0\] is 3, not an object"),
    (lambda m: m["entries"][1]["leaves"].__setitem__(0, []), r"leaves\[0\] is \[\], not an obj"),
]


@pytest.mark.parametrize(("change", "message"), MALFORMED)
def test_malformed_manifests_are_checkpoint_errors(trained, tmp_path, change, message):
    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    rewrite_manifest(broken, change)
    model = build()
    before = model.states
    with pytest.raises(CheckpointError, match=message):
        model.load(broken)
    assert model.states is before


def test_a_malformed_manifest_error_says_what_to_do(trained, tmp_path):
    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    rewrite_manifest(broken, lambda m: m.update(weights_only=1))
    with pytest.raises(CheckpointError) as error:
        build().load(broken)
    assert str(error.value) == (
        f"{broken / 'manifest.json'} is not a valid eqx_elegy manifest: 'weights_only' is 1, not "
        "a bool. The save is damaged or not an eqx_elegy save; load an older one or save again."
    )


def test_zero_sized_leaves_are_valid_shapes(trained):
    _, path = trained
    manifest = read_manifest(path)
    manifest["entries"][1]["leaves"][0]["shape"] = [0, 3]

    def fail(problem: str) -> Exception:
        raise AssertionError(problem)

    assert _manifest.check(manifest, fail) is manifest


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        (stat.S_IFREG, "a regular file"),
        (stat.S_IFDIR, "a directory"),
        (stat.S_IFLNK, "a symbolic link"),
        (stat.S_IFIFO, "a named pipe (FIFO)"),
        (stat.S_IFCHR, "a character device"),
        (stat.S_IFBLK, "a block device"),
        (stat.S_IFSOCK, "a socket"),
        (0, "a special file"),
    ],
)
def test_every_kind_of_file_is_named_in_errors(mode, words):
    assert _savedir.kind(mode | 0o644) == words


def test_leaf_file_with_a_trailing_record_is_refused(trained, tmp_path):
    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    name = params_file(broken)
    with open(broken / name, "ab") as f:
        np.save(f, np.zeros(3, np.float32))
    fix_checksum(broken, name)
    with pytest.raises(CheckpointError, match=rf"{name} has data after its last leaf"):
        build().load(broken)


def test_leaf_record_with_another_shape_is_refused_before_its_data_is_read(trained, tmp_path):
    """A record header claiming a huge array is refused from its header alone."""
    import io

    _, path = trained
    broken = copy_save(path, tmp_path / "broken")
    name = params_file(broken)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)}
    )
    (broken / name).write_bytes(b"\x93NUMPY\x01\x00" + header.getvalue()[8:])
    fix_checksum(broken, name)
    with pytest.raises(CheckpointError, match=rf"{name} holds a float32\[1099511627776\] leaf"):
        build().load(broken)


# ---------------------------------------------------------------------------- fuzzing load

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
NAMES = st.sampled_from(
    ["..", ".", "", "/", "/etc/passwd", "../outside/secret", "a/b", "manifest.json", "x.eqx"]
) | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
LINK_TARGETS = st.sampled_from(
    [
        "../outside/params.eqx",  # another model's leaf file
        "../outside/secret",
        "../outside/pipe",  # opening it would block
        "/proc/self/mem",
        "/dev/zero",
        "..",
        "missing",
        "self",  # a loop
    ]
)


@st.composite
def mutations(draw):
    """A list of changes to a valid save; see `apply`."""
    one = st.one_of(
        st.tuples(st.just("manifest"), JSON),
        st.tuples(st.just("manifest_text"), st.sampled_from(["[" * 50_000, "{", "\xff", ""])),
        st.tuples(st.just("field"), st.lists(st.integers(0, 10), min_size=1, max_size=4), JSON),
        st.tuples(st.just("file_name"), st.integers(0, 10), NAMES),
        st.tuples(st.just("link"), st.integers(0, 10), LINK_TARGETS),
        st.tuples(st.just("special"), st.integers(0, 10), st.sampled_from(["fifo", "dir", "gone"])),
        st.tuples(st.just("truncate"), st.integers(0, 10), st.integers(0, 400)),
        st.tuples(st.just("append"), st.integers(0, 10), st.binary(min_size=1, max_size=200)),
        st.tuples(st.just("flip"), st.integers(0, 10), st.integers(0, 10_000)),
        st.tuples(st.just("extra"), st.text("abc._-", min_size=1, max_size=6)),
        st.tuples(st.just("fix_checksums")),
    )
    return draw(st.lists(one, min_size=1, max_size=4))


def _pick(items, index):
    return items[index % len(items)] if items else None


def _set_field(manifest, path, value):
    """Set a field chosen by `path` (indices into keys/items) deep in the manifest."""
    node = manifest
    for depth, index in enumerate(path):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = _pick(keys, index)
        child = node[key]
        if depth == len(path) - 1 or not isinstance(child, dict | list):
            node[key] = value
            return
        node = child


def apply(save_dir: Path, change) -> bool:
    """Apply one mutation; True when it changed a leaf file's bytes in place."""
    kind = change[0]
    manifest_path = save_dir / "manifest.json"
    files = sorted(p.name for p in save_dir.iterdir() if p.name.endswith(".eqx"))

    def manifest():
        if manifest_path.is_symlink() or not manifest_path.is_file():
            return None  # never read through a link here either (a pipe, /dev/zero)
        try:
            return json.loads(manifest_path.read_text())
        except (OSError, ValueError, RecursionError):
            return None

    if kind == "manifest":
        manifest_path.unlink(missing_ok=True)
        manifest_path.write_text(json.dumps(change[1]))
    elif kind == "manifest_text":
        manifest_path.unlink(missing_ok=True)
        manifest_path.write_text(change[1], errors="surrogateescape")
    elif kind == "field" and (m := manifest()) is not None:
        _set_field(m, change[1], change[2])
        manifest_path.write_text(json.dumps(m))
    elif kind == "file_name" and (m := manifest()) is not None:
        entries = m.get("entries") if isinstance(m, dict) else None
        entry = _pick(entries, change[1]) if isinstance(entries, list) else None
        if isinstance(entry, dict):
            entry["file"] = change[2]
            manifest_path.write_text(json.dumps(m))
    elif kind in ("link", "special", "truncate", "append", "flip"):
        name = _pick(files + ["manifest.json"], change[1])
        target = save_dir / name
        if kind == "link":
            if target.is_dir() and not target.is_symlink():
                target.rmdir()
            target.unlink(missing_ok=True)
            target.symlink_to(target if change[2] == "self" else change[2])
        elif kind == "special":
            if target.is_dir() and not target.is_symlink():
                return False
            target.unlink(missing_ok=True)
            if change[2] == "fifo":
                os.mkfifo(target)
            elif change[2] == "dir":
                target.mkdir()
        elif target.is_file() and not target.is_symlink():
            data = bytearray(target.read_bytes())
            if kind == "truncate":
                data = data[: change[2]]
            elif kind == "append":
                data += change[2]
            elif data:
                data[change[2] % len(data)] ^= 0x5A
            target.write_bytes(bytes(data))
            return name != "manifest.json"
    elif kind == "extra":
        (save_dir / change[1]).write_text("extra")
    elif kind == "fix_checksums" and (m := manifest()) is not None:
        import hashlib

        for entry in m.get("entries", []) if isinstance(m, dict) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                continue
            file = save_dir / entry["file"]
            if "/" not in entry["file"] and file.is_file() and not file.is_symlink():
                entry["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
        manifest_path.write_text(json.dumps(m))
    return False


def _blocked(signum, frame):
    raise TimeoutError("load was still running after 20 s: it blocked or read without end")


class OpenAudit:
    """Records every file Python opens while `active` (audit events), so that a test
    can check that `load` opened nothing but names inside the save's directory."""

    active = False
    opened: list[str] = []

    @classmethod
    def hook(cls, event, args):
        if cls.active and event in ("open", "os.listdir", "os.scandir") and args:
            cls.opened.append(args[0])

    @classmethod
    def install(cls):
        if not getattr(cls, "installed", False):
            sys.addaudithook(cls.hook)
            cls.installed = True


class FuzzSources:
    """The trained model, its save and another model's save (with a short repr, which
    hypothesis prints; a model's repr is long)."""

    def __init__(self, model, path, other):
        self.model, self.path, self.other = model, path, other

    def __repr__(self):
        return f"FuzzSources({self.path}, {self.other})"


@pytest.fixture(scope="module")
def fuzz_sources(trained, tmp_path_factory):
    model, path = trained
    other = tmp_path_factory.mktemp("other") / "save"
    build(seed=9).save(other)
    OpenAudit.install()
    return FuzzSources(model, path, other)


@settings(
    max_examples=120,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(changes=mutations())
def test_load_of_a_mutated_save_loads_or_refuses_and_touches_nothing_outside(fuzz_sources, changes):
    """Whatever a save directory holds (random JSON, names, links out of it, pipes,
    truncations, trailing data), `load` either loads or raises `CheckpointError`; it
    opens nothing outside the directory, changes nothing anywhere, never blocks, and
    never loads what is outside (the other model's leaf file)."""
    model, path, other = fuzz_sources.model, fuzz_sources.path, fuzz_sources.other
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_dir = copy_save(path, root / "save")
        outside = root / "outside"
        outside.mkdir()
        (outside / "params.eqx").write_bytes((other / params_file(other)).read_bytes())
        (outside / "secret").write_text("secret")
        os.mkfifo(outside / "pipe")
        tampered = False
        for change in changes:
            tampered |= apply(save_dir, change)
        before = tree_snapshot(root)
        fresh = build()
        states = fresh.states
        signal.signal(signal.SIGALRM, _blocked)
        signal.alarm(20)  # a blocked open or endless read fails the test, not hangs it
        OpenAudit.opened, OpenAudit.active = [], True
        try:
            fresh.load(save_dir)
            loaded = True
            event("loaded")
        except CheckpointError as error:
            loaded = False
            event(f"refused: {re.sub(r'[^a-z ]', '', str(error).split(';')[0][-40:])}")
        finally:
            OpenAudit.active = False
            signal.alarm(0)
        assert tree_snapshot(root) == before
        for opened in OpenAudit.opened:
            name = os.fsdecode(opened) if isinstance(opened, str | bytes) else None
            if name is None:  # a descriptor: a directory opened by its path before
                continue
            inside = not os.path.isabs(name) and "/" not in name
            assert inside or Path(name).resolve() == save_dir.resolve(), name
        if not loaded:
            assert fresh.states is states
        elif not tampered:
            assert_same_states(fresh.states, model.states)


def test_a_path_that_cannot_be_examined_is_a_checkpoint_error(trained, tmp_path):
    """An OSError while looking at the path (here a name longer than the filesystem
    allows) is a CheckpointError naming it, on save and on load."""
    model, _ = trained
    long = tmp_path / ("a" * 300)
    with pytest.raises(CheckpointError, match=r"a{300} cannot be examined \(File name too long\)"):
        model.save(long)
    with pytest.raises(CheckpointError, match=r"a{300} cannot be examined \(File name too long\)"):
        build().load(long)
