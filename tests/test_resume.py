"""Resuming: a fit of N epochs equals k epochs, a save, and `initial_epoch=k` in a new
process; Ctrl-C leaves the model at its last completed step, ready to save."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

import eqx_elegy as elegy

ROOT = Path(__file__).resolve().parent.parent
EPOCHS, SPLIT_AT = 4, 2
FIT = dict(batch_size=48, validation_split=0.2, steps_per_execution=2, verbose=0)
STEPS_PER_EPOCH = 4  # 192 training rows in batches of 48, run two per compiled call


class DropoutNet(eqx.Module):
    """Dropout makes every step depend on its key, so a resumed fit matches only if the
    keys depend on (seed, epoch, step) alone."""

    hidden: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(8, 16, key=k1)
        self.dropout = eqx.nn.Dropout(0.3)
        self.out = eqx.nn.Linear(16, 3, key=k2)

    def __call__(self, x, *, key):
        return self.out(self.dropout(jax.nn.relu(self.hidden(x)), key=key))


def build() -> elegy.Model:
    schedule = optax.exponential_decay(3e-2, transition_steps=5, decay_rate=0.7)
    return elegy.Model(
        module=DropoutNet(jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(schedule),
        seed=3,
    )


def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(240, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] + x[:, 2] > 0.5).astype(np.int32)
    return x, y


def run_child(mode: str, *args: str, **popen) -> subprocess.Popen:
    """Run `child(mode, *args)` of this file in a new Python process."""
    script = (
        "import sys, jax\n"
        "jax.config.update('jax_num_cpu_devices', 8)\n"
        "jax.config.update('jax_numpy_dtype_promotion', 'strict')\n"
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('resume_tests', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module.child(*sys.argv[2:])\n"
    )
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-c", script, __file__, mode, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
        **popen,
    )


def child(mode: str, *args: str) -> None:
    """What the new process does (see `run_child`)."""
    x, y = data()
    model = build()
    if mode == "resume":
        load_from, save_to = args
        model.load(load_from)
        history = model.fit(x, y, epochs=EPOCHS, initial_epoch=SPLIT_AT, **FIT)
        model.save(save_to)
        Path(save_to, "history.json").write_text(json.dumps(history.history))
    elif mode == "interrupt":
        (save_to,) = args
        history, steps = elegy.callbacks.History(), StepCounter()
        try:
            model.fit(x, y, epochs=10_000, callbacks=[history, steps], **FIT)
        except KeyboardInterrupt:
            model.save(save_to)
            Path(save_to, "result.json").write_text(
                json.dumps({"steps": steps.count, "epochs": history.epoch, **history.history})
            )
            print("interrupted", flush=True)


class StepCounter(elegy.callbacks.Callback):
    """Counts completed training steps; after a few, says so and slows down so that a
    SIGINT sent then lands in the middle of the fit."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        import time

        self.count += 1
        if self.count == 7:
            print("ready", flush=True)
        if self.count >= 7:
            time.sleep(0.02)


def adam_count(model: elegy.Model) -> int:
    return int(model.states.optimizer_states[0].count)


def assert_params_close(a: elegy.Model, b: elegy.Model) -> None:
    for left, right in zip(
        jax.tree.leaves(a.states.net_params), jax.tree.leaves(b.states.net_params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=0, atol=1e-6)


def test_resumed_fit_in_a_new_process_equals_an_uninterrupted_one(tmp_path):
    x, y = data()
    model = build()
    head = model.fit(x, y, epochs=SPLIT_AT, **FIT).history
    model.save(tmp_path / "epoch2")
    model.reset()  # the same model again (compiled steps are kept), from scratch
    full_history = model.fit(x, y, epochs=EPOCHS, **FIT).history
    child = run_child("resume", str(tmp_path / "epoch2"), str(tmp_path / "final"))
    assert child.wait(timeout=300) == 0

    resumed = build()
    resumed.load(tmp_path / "final")
    tail = json.loads((tmp_path / "final" / "history.json").read_text())
    assert adam_count(resumed) == adam_count(model) == EPOCHS * STEPS_PER_EPOCH
    assert_params_close(resumed, model)
    assert set(tail) == set(full_history) and "val_accuracy" in tail
    for name, values in full_history.items():
        np.testing.assert_allclose(head[name] + tail[name], values, rtol=0, atol=1e-6)
    # the learning rate schedule really moved and dropout really ran: not a trivial match
    assert full_history["loss"][0] != full_history["loss"][-1]


def test_ctrl_c_leaves_the_model_at_its_last_step_and_saveable(tmp_path):
    with run_child("interrupt", str(tmp_path / "interrupted"), stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0
    assert rest.strip() == "interrupted"

    result = json.loads((tmp_path / "interrupted" / "result.json").read_text())
    interrupted = build()
    interrupted.load(tmp_path / "interrupted")
    steps = result["steps"]
    assert steps >= 7
    assert adam_count(interrupted) == steps  # the model holds every completed step, no more

    # The same steps, replayed: whole epochs, then the first steps of the next one.
    x, y = data()
    epochs, partial = divmod(steps, STEPS_PER_EPOCH)
    reference = build()
    history = reference.fit(x, y, epochs=epochs, **FIT).history if epochs else {}
    if partial:
        reference.fit(x, y, epochs=epochs + 1, initial_epoch=epochs, steps_per_epoch=partial, **FIT)
    assert adam_count(reference) == steps
    assert_params_close(interrupted, reference)
    # The History holds the epochs whose end was reached; an interrupt right after an
    # epoch's last step comes before that epoch's end (validation, on_epoch_end).
    done = len(result["epochs"])
    assert result["epochs"] == list(range(done))
    assert done == epochs or (partial == 0 and done == epochs - 1)
    for name, values in history.items():
        np.testing.assert_allclose(result[name], values[:done], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- backup safety
# (issue 15): a backup record is trusted only as far as it names one of our backups,
# a plain child of the backup directory.


def small_model() -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.Linear(8, 3, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.sgd(0.1),
    )


def fit_with_backup(model: elegy.Model, backup_dir: Path, epochs: int = 2) -> None:
    x, y = data()
    backup = elegy.callbacks.BackupAndRestore(backup_dir)
    model.fit(x[:32], y[:32], epochs=epochs, batch_size=16, callbacks=[backup], verbose=0)


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    out = {}
    for entry in [root, *sorted(root.rglob("*"))]:
        st = entry.lstat()
        kind = (
            "link"
            if entry.is_symlink()
            else "dir"
            if entry.is_dir()
            else "file"
            if stat.S_ISREG(st.st_mode)
            else "special"  # a named pipe: never opened (that would block)
        )
        content = (
            os.readlink(entry) if kind == "link" else entry.read_bytes() if kind == "file" else ""
        )
        out[str(entry)] = (kind, content, st.st_mtime_ns)
    return out


@pytest.mark.parametrize(
    "checkpoint",
    ["..", ".", "", "/", "../project", "epoch1-step0/..", "epoch1-step0/../..", 7, None],
)
def test_backup_record_naming_anything_but_a_child_backup_is_refused(tmp_path, checkpoint):
    """The parent of the backup directory is itself a save (so loading it would work);
    a record pointing there is refused before anything is loaded or removed."""
    model = small_model()
    project = tmp_path / "project"
    model.save(project)
    (project / "backup").mkdir()  # the save now holds a user's directory too
    (project / "backup" / "epoch1-step0").mkdir()
    record = {"epoch": 1, "step": 0, "checkpoint": checkpoint}
    (project / "backup" / "backup.json").write_text(json.dumps(record))
    before = snapshot(tmp_path)
    with pytest.raises(
        elegy.CheckpointError, match=r"backup\.json (is not a backup record|points)"
    ):
        fit_with_backup(small_model(), project / "backup")
    assert snapshot(tmp_path) == before


def test_backup_record_pointing_at_a_symlink_is_refused(tmp_path):
    model = small_model()
    outside = tmp_path / "outside"
    model.save(outside)
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / "epoch1-step0").symlink_to(outside, target_is_directory=True)
    (backup_dir / "backup.json").write_text(
        json.dumps({"epoch": 1, "step": 0, "checkpoint": "epoch1-step0"})
    )
    before = snapshot(tmp_path)
    with pytest.raises(elegy.CheckpointError, match=r"epoch1-step0 is a symbolic link"):
        fit_with_backup(small_model(), backup_dir)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "nested", "types"])
def test_backup_record_that_is_not_a_plain_json_file_is_refused(tmp_path, kind):
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    record = backup_dir / "backup.json"
    if kind == "fifo":
        os.mkfifo(record)  # reading it would block forever
    elif kind == "symlink":
        (tmp_path / "elsewhere.json").write_text('{"epoch": 0, "step": 0, "checkpoint": "x"}')
        record.symlink_to(tmp_path / "elsewhere.json")
    elif kind == "directory":
        record.mkdir()
    elif kind == "nested":
        record.write_text("[" * 100_000)
    else:
        record.write_text('{"epoch": true, "step": 0, "checkpoint": "epoch1-step0"}')
    before = snapshot(tmp_path)
    with pytest.raises(elegy.CheckpointError, match=r"backup\.json"):
        fit_with_backup(small_model(), backup_dir)
    assert snapshot(tmp_path) == before


def test_backup_never_removes_a_directory_it_did_not_write(tmp_path):
    """A directory named like a backup but not one (a user's files) is never removed:
    neither when the next backup replaces it nor when the fit ends."""
    model = small_model()
    backup_dir = tmp_path / "backup"
    fit_with_backup(model, backup_dir, epochs=1)  # leaves nothing behind
    assert os.listdir(backup_dir) == []
    # A record left by a crash, whose backup was then replaced by a user's directory.
    model.save(backup_dir / "epoch1-step0")
    (backup_dir / "backup.json").write_text(
        json.dumps({"epoch": 1, "step": 0, "checkpoint": "epoch1-step0"})
    )
    resumed = small_model()
    fit_with_backup(resumed, backup_dir, epochs=3)
    assert os.listdir(backup_dir) == []  # our own backups are cleaned up

    model.save(backup_dir / "epoch1-step0")
    (backup_dir / "epoch1-step0" / "notes.txt").write_text("mine")
    (backup_dir / "backup.json").write_text(
        json.dumps({"epoch": 1, "step": 0, "checkpoint": "epoch1-step0"})
    )
    with pytest.warns(UserWarning, match=r"epoch1-step0 .*notes\.txt.*left it in place"):
        fit_with_backup(small_model(), backup_dir, epochs=3)
    assert (backup_dir / "epoch1-step0" / "notes.txt").read_text() == "mine"
