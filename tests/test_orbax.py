"""The orbax-checkpoint backend (issue 22): `save(path, backend="orbax")`, `load` of
either format onto the model's current layout, asynchronous saves that are waited for
and whose errors surface, and the same atomicity promise as the native format."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_checkpoint import assert_same_states, build, data, host_leaves

import eqx_elegy as elegy
import eqx_elegy._checkpoint as ck
from eqx_elegy._checkpoint import CheckpointError, read_manifest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for two epochs (BatchNorm state, adam, metrics), its orbax save and
    its native save."""
    model = build()
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    root = tmp_path_factory.mktemp("orbax")
    model.save(root / "orbax", backend="orbax")
    model.save(root / "native")
    return model, root / "orbax", root / "native"


def test_round_trip_is_bit_for_bit(trained):
    model, path, _ = trained
    fresh = build(seed=3)
    fresh.load(path)
    assert_same_states(fresh.states, model.states)
    assert fresh.initialized
    assert jax.dtypes.issubdtype(fresh.states.rng.key.dtype, jax.dtypes.prng_key)
    x, _ = data()
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_layout_is_the_native_manifest_and_an_orbax_directory(trained):
    model, path, native = trained
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "orbax"]
    manifest = read_manifest(path)
    assert (manifest["format_version"], manifest["backend"]) == (2, "orbax")
    same = read_manifest(native)
    assert same["format_version"] == 1 and "backend" not in same
    # The same keys and leaf tables as the native save; the arrays are in orbax/.
    strip = [(e["key"], e["leaves"]) for e in manifest["entries"]]
    assert strip == [(e["key"], e["leaves"]) for e in same["entries"]]
    assert {e["file"] for e in manifest["entries"]} <= {"orbax", None}
    assert (path / "orbax" / "commit_success.txt").is_file() or (path / "orbax").is_dir()


def test_load_reads_either_format_into_the_same_model(trained):
    model, path, native = trained
    for source in (native, path, native):
        fresh = build(seed=4)
        fresh.load(source)
        assert_same_states(fresh.states, model.states)


def test_weights_only(trained, tmp_path):
    model, _, _ = trained
    model.save(tmp_path / "w", backend="orbax", weights_only=True)
    fresh = build(seed=5)
    with pytest.raises(CheckpointError, match="holds only the weights"):
        fresh.load(tmp_path / "w")
    fresh.load(tmp_path / "w", weights_only=True)
    for a, b in zip(
        host_leaves((fresh.states.net_params, fresh.states.net_states)),
        host_leaves((model.states.net_params, model.states.net_states)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_a_model_of_another_structure_gets_the_native_mismatch_error(trained):
    _, path, native = trained
    messages = []
    for source in (native, path):
        wide = build(width=16)
        before = wide.states
        with pytest.raises(CheckpointError) as info:
            wide.load(source)
        assert wide.states is before
        messages.append(str(info.value).replace(str(source), "<save>"))
    assert messages[0] == messages[1]
    assert (
        "net_params.linear.weight: the model has float32[16, 4], the save float32[8, 4]"
        in (messages[1])
    )


def test_extra_keys_bfloat16_numpy_and_python_numbers_round_trip(tmp_path):
    def with_extra(step, value):
        model = elegy.Model(module=eqx.nn.Linear(2, 2, key=jax.random.key(0)))
        extra = {
            "step": step,
            "half": jnp.full((3,), value, jnp.bfloat16),
            "flag": np.bool_(1),
            "table": np.arange(4, dtype=np.int16) * step,
            "key": jax.random.key(step),
        }
        return eqx.tree_at(lambda m: m.states, model, model.states.update(extra=extra))

    with_extra(7, 1.5).save(tmp_path / "extra", backend="orbax")
    fresh = with_extra(0, 0.0)
    fresh.load(tmp_path / "extra")
    extra = fresh.states.extra
    assert extra["step"] == 7 and type(extra["step"]) is int
    assert extra["half"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(extra["half"], np.float32), [1.5] * 3)
    assert type(extra["flag"]) is np.bool_ and extra["flag"]
    assert type(extra["table"]) is np.ndarray
    np.testing.assert_array_equal(extra["table"], np.arange(4) * 7)
    np.testing.assert_array_equal(
        jax.random.key_data(extra["key"]), jax.random.key_data(jax.random.key(7))
    )


def test_a_missing_orbax_names_the_extra_to_install(trained, tmp_path, monkeypatch):
    model, path, _ = trained
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'eqx_elegy\[orbax\]'"):
        model.save(tmp_path / "x", backend="orbax")
    assert not (tmp_path / "x").exists() and not (tmp_path / ".x.saving").exists()
    with pytest.raises(ImportError, match=r"pip install 'eqx_elegy\[orbax\]'"):
        build().load(path)


NO_ORBAX_CHILD = r"""
import sys
sys.modules["orbax"] = None  # as if orbax-checkpoint were not installed: import fails
import jax, equinox as eqx
import eqx_elegy as elegy
model = elegy.Model(module=eqx.nn.Linear(2, 2, key=jax.random.key(0)))
model.save(sys.argv[1])  # the native format needs nothing more
model.load(sys.argv[1])
try:
    model.save(sys.argv[1] + "-orbax", backend="orbax")
except ImportError as error:
    print(error)
"""


def test_the_library_works_without_orbax_installed(tmp_path):
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", NO_ORBAX_CHILD, str(tmp_path / "ckpt")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("backend='orbax' needs orbax-checkpoint, which is not ")
    assert result.stdout.rstrip().endswith("install it with: pip install 'eqx_elegy[orbax]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_bad_backend_arguments(trained, tmp_path):
    model, _, _ = trained
    with pytest.raises(ValueError, match=r"backend must be one of \('native', 'orbax'\), got 'h5'"):
        model.save(tmp_path / "x", backend="h5")
    with pytest.raises(ValueError, match="asynchronous=True needs backend='orbax'"):
        model.save(tmp_path / "x", asynchronous=True)
    with pytest.raises(ValueError, match="ModelCheckpoint: backend must be one of"):
        elegy.callbacks.ModelCheckpoint(tmp_path / "c", backend="h5")
    with pytest.raises(ValueError, match="BackupAndRestore: backend must be one of"):
        elegy.callbacks.BackupAndRestore(tmp_path / "b", backend="h5")
    assert list(tmp_path.iterdir()) == []


def test_an_orbax_save_is_replaced_only_as_a_save_of_ours(trained, tmp_path):
    """The file-safety rules hold: an orbax save is one of ours and may be replaced by
    either backend; with a stray file in it, or its orbax/ a link, it is not."""
    model, _, _ = trained
    target = tmp_path / "ckpt"
    model.save(target, backend="orbax")
    model.save(target, backend="orbax")
    model.save(target)  # native over orbax
    model.save(target, backend="orbax")  # and back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    (target / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=r"it holds notes\.txt, which is not part"):
        model.save(target, backend="orbax")
    (target / "notes.txt").unlink()
    os.rename(target / "orbax", tmp_path / "elsewhere")
    (target / "orbax").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match=r"its orbax is a symbolic link, not a directory"):
        model.save(target)
    with pytest.raises(CheckpointError, match=r"orbax is a symbolic link, not a directory"):
        build().load(target)


def test_a_damaged_orbax_directory_is_a_checkpoint_error(trained, tmp_path):
    """orbax's tree metadata, which it reads before the arrays. (Garbled array data is
    a CheckpointError too, but orbax then leaves reads in flight that report to a closed
    event loop: "Exception ignored" noise that the suite, warnings as errors, would catch
    in whichever test runs next.)"""
    model, _, _ = trained
    target = tmp_path / "ckpt"
    model.save(target, backend="orbax")
    (target / "orbax" / "_METADATA").write_bytes(b"garbage")
    fresh = build(seed=2)
    before = fresh.states
    with pytest.raises(CheckpointError, match=r"could not be read by orbax-checkpoint \(JSON"):
        fresh.load(target)
    assert fresh.states is before


@pytest.mark.parametrize("plant", ["link", "fifo", "dir-link"])
def test_a_link_or_pipe_inside_orbax_is_refused_by_load_and_by_save(trained, tmp_path, plant):
    """orbax opens the files under orbax/ by path: a link in there (to another model's
    shard, or a directory elsewhere) or a named pipe is refused before orbax reads
    anything, and a save will not replace a directory that holds one."""
    model, _, _ = trained
    target = tmp_path / "ckpt"
    model.save(target, backend="orbax")
    files = sorted(f for f in (target / "orbax").rglob("*") if f.is_file())
    victim = files[-1]
    victim.unlink()
    if plant == "link":
        victim.symlink_to(tmp_path / "elsewhere")
        what = "a symbolic link"
    elif plant == "fifo":
        os.mkfifo(victim)
        what = r"a named pipe \(FIFO\)"
    else:
        (target / "orbax" / "extra").symlink_to(tmp_path, target_is_directory=True)
        victim = target / "orbax" / "extra"
        what = "a symbolic link"
    inside = re.escape(str(victim.relative_to(target)))
    fresh = build(seed=2)
    before = fresh.states
    with pytest.raises(CheckpointError, match=rf"{inside} is {what}, not a regular file or dir"):
        fresh.load(target)
    assert fresh.states is before
    with pytest.raises(CheckpointError, match=rf"its {inside} is {what}, not a regular file or"):
        model.save(target, backend="orbax")
    assert os.path.lexists(victim)


# ---------------------------------------------------------------------------- layouts

SAVE_ON_4 = r"""
import sys
import jax
jax.config.update("jax_num_cpu_devices", 4)
sys.path.insert(0, "tests")
from test_checkpoint import build, data
import eqx_elegy as elegy

path, kind = sys.argv[1], sys.argv[2]
devices = jax.devices()
assert len(devices) == 4, devices
strategy = (
    elegy.FSDP(devices, min_size=0) if kind == "fsdp" else elegy.DataParallel(devices)
)
model = build().distributed(strategy)
x, y = data()
model.fit(x, y, epochs=2, batch_size=16, verbose=0)
weight = model.states.net_params.linear.weight
assert len(weight.sharding.device_set) == 4
print("sharded", weight.sharding.spec if hasattr(weight.sharding, "spec") else "", flush=True)
model.save(path, backend="orbax")
model.save(path + "-native")
"""


@pytest.mark.parametrize("kind", ["fsdp", "data_parallel"])
def test_a_save_from_4_devices_loads_onto_1_and_onto_a_2_device_mesh(tmp_path, kind):
    """A process with 4 CPU devices trains under FSDP (or DataParallel) and saves with
    orbax; this process (8 devices) loads it onto one device and onto 2-device layouts,
    equal to the native save of the same states."""
    path = tmp_path / "ckpt"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", SAVE_ON_4, str(path), kind],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = build(seed=1)
    expected.load(f"{path}-native")

    single = build(seed=2)
    single.load(path)
    assert_same_states(single.states, expected.states)
    assert single.states.net_params.linear.weight.sharding.device_set == {jax.devices()[0]}

    two = jax.devices()[:2]
    for strategy in (elegy.FSDP(two, min_size=0), elegy.DataParallel(two)):
        model = build(seed=3).distributed(strategy)
        template = model.states.net_params.linear.weight.sharding
        model.load(path)
        assert_same_states(model.states, expected.states)
        weight = model.states.net_params.linear.weight
        assert weight.sharding == template  # onto the model's current layout
        x, y = data()
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # and it trains from there


# ---------------------------------------------------------------------------- async


def test_an_asynchronous_save_is_waited_for_by_load_and_the_next_save(trained, tmp_path):
    model, _, _ = trained
    target = tmp_path / "ckpt"
    model.save(target, backend="orbax", asynchronous=True)
    fresh = build(seed=6)
    fresh.load(target)  # waits for the save in flight
    assert_same_states(fresh.states, model.states)
    other = build(seed=7)
    other.save(target, backend="orbax", asynchronous=True)
    other.save(target, backend="orbax", asynchronous=True)  # waits for the first
    elegy.wait_for_saves()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    fresh.load(target)
    assert_same_states(fresh.states, other.states)


def test_a_failed_asynchronous_save_raises_on_the_next_wait(trained, tmp_path, monkeypatch):
    model, _, _ = trained
    target = tmp_path / "ckpt"
    model.save(target, backend="orbax")
    swap_in = ck._swap_in

    def broken(staged, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "_swap_in", broken)
    build(seed=8).save(target, backend="orbax", asynchronous=True)
    with pytest.raises(
        CheckpointError,
        match=r"asynchronous save failed in the background \(OSError: \[Errno 28\] No space",
    ):
        elegy.wait_for_saves()
    elegy.wait_for_saves()  # raised once, then forgotten
    monkeypatch.setattr(ck, "_swap_in", swap_in)
    fresh = build(seed=9)
    fresh.load(target)  # the last completed save is intact
    assert_same_states(fresh.states, model.states)
    build(seed=8).save(target, backend="orbax")  # and saving again tidies up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_failed_checkpoint_in_a_fit_surfaces_at_the_end_of_the_fit(tmp_path, monkeypatch):
    def broken(staged, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "_swap_in", broken)
    model = build()
    x, y = data()
    checkpoint = elegy.callbacks.ModelCheckpoint(tmp_path / "ckpt", backend="orbax")
    with pytest.raises(CheckpointError, match=r"No space left on device"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[checkpoint])


def test_fit_with_an_asynchronous_model_checkpoint_gives_the_same_parameters(tmp_path):
    x, y = data()
    plain = build()
    plain.fit(x, y, epochs=3, batch_size=16, verbose=0)
    saved = build()
    checkpoint = elegy.callbacks.ModelCheckpoint(
        tmp_path / "epoch{epoch}", backend="orbax", save_freq=2
    )
    saved.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[checkpoint])
    # Saving every 2 steps splits steps_per_execution="auto"'s chunks there, so the two fits
    # run differently compiled programs: equal up to float rounding.
    for left, right in zip(
        jax.tree.leaves(saved.states.net_params),
        jax.tree.leaves(plain.states.net_params),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=1e-6, atol=1e-7)
    last = build(seed=5)
    last.load(tmp_path / "epoch3")
    assert read_manifest(tmp_path / "epoch3")["metadata"]["epoch"] == 3
    assert_same_states(last.states.net_params, saved.states.net_params)


def test_backup_and_restore_with_orbax_resumes_to_the_same_parameters(tmp_path):
    x, y = data()
    plain = build()
    plain.fit(x, y, epochs=3, batch_size=16, verbose=0)

    backup_dir = tmp_path / "backup"
    first = build()
    keep = elegy.callbacks.BackupAndRestore(backup_dir, backend="orbax", delete_checkpoint=False)
    first.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[keep])
    record = json.loads((backup_dir / "backup.json").read_text())
    assert read_manifest(backup_dir / record["checkpoint"])["backend"] == "orbax"
    assert sorted(p.name for p in backup_dir.iterdir()) == ["backup.json", record["checkpoint"]]

    resumed = build()  # the same seed: the shuffling depends on it
    backup = elegy.callbacks.BackupAndRestore(backup_dir, backend="orbax")
    resumed.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[backup])
    assert backup.resumed_from == (2, 0)
    assert_same_states(resumed.states.net_params, plain.states.net_params)
    assert list(backup_dir.iterdir()) == []


EXIT_CHILD = r"""
import sys
import jax, equinox as eqx
import eqx_elegy as elegy
model = elegy.Model(module=eqx.nn.Linear(300, 300, key=jax.random.key(0)))
model.save(sys.argv[1], backend="orbax", asynchronous=True)
print("returned", flush=True)
"""


def test_process_exit_waits_for_an_asynchronous_save(tmp_path):
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", EXIT_CHILD, str(tmp_path / "ckpt")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "returned\n"
    model = elegy.Model(module=eqx.nn.Linear(300, 300, key=jax.random.key(1)))
    model.load(tmp_path / "ckpt")
    np.testing.assert_array_equal(
        model.states.net_params.weight, eqx.nn.Linear(300, 300, key=jax.random.key(0)).weight
    )


# ---------------------------------------------------------------------------- kill

KILL_CHILD = r"""
import sys, time
import jax, equinox as eqx
import eqx_elegy as elegy
import eqx_elegy._checkpoint as ck
import eqx_elegy._orbax as orbax_backend

path, phase = sys.argv[1], sys.argv[2]
elegy.Model(module=eqx.nn.Linear(3, 2, key=jax.random.key(0))).save(path, backend="orbax")
print("first save done", flush=True)

def stop():
    print("stopping", flush=True)
    time.sleep(120)

if phase == "writing":  # orbax has written its files, the manifest is not written yet
    real = orbax_backend._write_manifest
    def slow(*args):
        stop()
    orbax_backend._write_manifest = slow
else:  # the old save set aside, the new one not yet renamed in
    rename = ck._rename
    def slow_rename(src, dst):
        rename(src, dst)
        stop()
    ck._rename = slow_rename
big = eqx.nn.Linear(3, 2, key=jax.random.key(1))
elegy.Model(module=big).save(path, backend="orbax", asynchronous=True)
print("returned", flush=True)
elegy.wait_for_saves()
print("second save done", flush=True)
"""


@pytest.mark.parametrize("phase", ["writing", "renaming"])
def test_sigkill_during_an_asynchronous_save_keeps_the_previous_save(tmp_path, phase):
    target = tmp_path / "ckpt"
    with subprocess.Popen(
        [sys.executable, "-W", "error", "-c", KILL_CHILD, str(target), phase],
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
    assert lines[0] == "first save done" and lines[-1] == "stopping", lines
    assert child.returncode == -signal.SIGKILL

    leftovers = sorted(p.name for p in tmp_path.iterdir())
    if phase == "writing":
        assert leftovers == [".ckpt.saving", "ckpt"]
        assert (tmp_path / ".ckpt.saving" / "orbax").is_dir()
    else:
        assert leftovers == [".ckpt.previous", ".ckpt.saving"]

    model = elegy.Model(module=eqx.nn.Linear(3, 2, key=jax.random.key(7)))
    model.load(target)
    first = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    np.testing.assert_array_equal(model.states.net_params.weight, first.weight)
    np.testing.assert_array_equal(model.states.net_params.bias, first.bias)

    model.save(target, backend="orbax")  # and saving again tidies up what the crash left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


RAW_KILL_CHILD = r"""
import sys, time
import jax, equinox as eqx
import eqx_elegy as elegy

path = sys.argv[1]
elegy.Model(module=eqx.nn.Linear(3, 2, key=jax.random.key(0))).save(path, backend="orbax")
big = eqx.nn.MLP(2048, 2048, 2048, 3, key=jax.random.key(1))  # 50 MB to write
elegy.Model(module=big).save(path, backend="orbax", asynchronous=True)
print("returned", flush=True)
elegy.wait_for_saves()
print("second save done", flush=True)
time.sleep(120)  # killed here at the latest
"""


def test_sigkill_at_any_moment_of_an_asynchronous_save_leaves_a_loadable_save(tmp_path):
    """No hooks: the process is killed as soon as `save` returns (orbax writing in the
    background), then later and later. Each time the target loads as the first save or,
    when the kill came after the commit, as the complete second one; a partial save is
    refused by `load` and removed by the next save."""
    first = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    outcomes = []
    for delay in (0.0, 0.5, 2.0):
        root = tmp_path / f"after{delay}"
        root.mkdir()
        target = root / "ckpt"
        with subprocess.Popen(
            [sys.executable, "-W", "error", "-c", RAW_KILL_CHILD, str(target)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == "returned\n"
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL
        leftovers = sorted(p.name for p in root.iterdir())
        assert set(leftovers) <= {"ckpt", ".ckpt.saving", ".ckpt.previous"}, leftovers
        if (root / ".ckpt.saving").exists():  # a partial save: refused
            with pytest.raises(CheckpointError, match="is an unfinished save"):
                build().load(root / ".ckpt.saving")
        small = elegy.Model(module=eqx.nn.Linear(3, 2, key=jax.random.key(7)))
        try:
            small.load(target)
        except CheckpointError as error:  # the second save completed: another structure
            assert "does not fit" in str(error)
            outcomes.append("second")
            big = eqx.nn.MLP(2048, 2048, 2048, 3, key=jax.random.key(2))
            elegy.Model(module=big).load(target)
        else:
            np.testing.assert_array_equal(small.states.net_params.weight, first.weight)
            outcomes.append("first")
        small.save(target, backend="orbax")  # saving again tidies up what the kill left
        assert sorted(p.name for p in root.iterdir()) == ["ckpt"]
    assert outcomes[0] == "first", outcomes  # killed mid-save at least once


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(backend="tensorstore"), r"'backend' is 'tensorstore', not 'orbax'"),
        (lambda m: m.pop("backend"), r"the manifest has no backend"),
        (lambda m: m["entries"][1].update(file="d"), r"entries\[1\]\.file is 'd', not 'orbax'"),
        (
            lambda m: m["entries"][1].update(sha256="0" * 64),
            r"entries\[1\]\.sha256 is set; the entries of an orbax save have none",
        ),
        (lambda m: m.update(format_version=1), r"the manifest has unknown fields: backend"),
    ],
)
def test_a_malformed_orbax_manifest_is_a_checkpoint_error(trained, tmp_path, change, message):
    _, path, _ = trained
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    change(manifest)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=message):
        build().load(broken)
