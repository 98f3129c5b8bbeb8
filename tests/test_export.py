"""`Model.export` and `load_exported`: the prediction served without the model's code.

The models are exported once per module; one fresh interpreter that cannot import
equinox, optax, eqx_elegy or this file loads every export through `_serving.py` alone
and predicts batches of 1, 7 and 33 examples, which must equal `model.predict`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import digits, mlp_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eqx_elegy as elegy
from eqx_elegy._export import input_spec
from eqx_elegy._serving import FUNCTION_FILE, MANIFEST, WEIGHTS_FILE

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 7, 33)


# ---------------------------------------------------------------------------- models


class TwoInputs(eqx.Module):
    """Dict in, dict (holding a tuple) out."""

    image: eqx.nn.Linear
    meta: eqx.nn.Linear

    def __init__(self, key: Any):
        k1, k2 = jax.random.split(key)
        self.image = eqx.nn.Linear(64, 10, key=k1)
        self.meta = eqx.nn.Linear(3, 2, key=k2)

    def __call__(self, x: dict[str, Any]) -> dict[str, Any]:
        logits = self.image(x["image"])
        return {"logits": logits, "aux": (self.meta(x["meta"]), jnp.tanh(logits[:4]))}


class BatchNormNet(eqx.Module):
    linear: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    out: eqx.nn.Linear

    def __init__(self, key: Any):
        k1, k2 = jax.random.split(key)
        self.linear = eqx.nn.Linear(64, 16, key=k1)
        self.norm = eqx.nn.BatchNorm(16, axis_name="batch", momentum=0.5, mode="ema")
        self.out = eqx.nn.Linear(16, 10, key=k2)

    def __call__(self, x: Any, state: eqx.nn.State) -> tuple[Any, eqx.nn.State]:
        h, state = self.norm(self.linear(x), state)
        return self.out(jax.nn.relu(h)), state


def cnn(key: Any) -> eqx.nn.Sequential:
    k1, k2 = jax.random.split(key)
    return eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 4, 3, key=k1),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(4 * 6 * 6, 10, key=k2),
        ]
    )


class LinearClassifier(elegy.Model):
    """Overrides pred_step (Elegy's low-level API): its own parameters, a tuple out."""

    def pred_step(self, x: Any, states: elegy.States, initializing: bool) -> elegy.PredStep:
        if initializing:
            k1, k2 = jax.random.split(jax.random.key(3))
            params = (jax.random.normal(k1, (64, 10)), jax.random.normal(k2, (10,)))
        else:
            params = states.net_params
        w, b = params
        logits = x @ w + b
        return (logits, jax.nn.softmax(logits)), states.update(net_params=params)


def _classifier(module: Any, **kwargs: Any) -> elegy.Model:
    return elegy.Model(
        module=module,
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
        **kwargs,
    )


def _inputs(name: str, n: int) -> Any:
    x, _ = digits(n)
    if name == "cnn":
        return x.reshape(n, 1, 8, 8)
    if name == "dict":
        meta = np.linspace(-1, 1, 3 * n, dtype=np.float32).reshape(n, 3)
        return {"image": x, "meta": meta}
    return x


def _build(name: str) -> elegy.Model:
    """A model of kind `name` that has seen data (fitted where it has a loss)."""
    key = jax.random.key(0)
    x, y = _inputs(name, 64), digits(64)[1]
    if name == "mlp":
        model = mlp_model()
    elif name == "cnn":
        model = _classifier(cnn(key))
    elif name == "batchnorm":
        model = _classifier(BatchNormNet(key))
    elif name == "dict":
        model = elegy.Model(module=TwoInputs(key))
        model.predict(x)
        return model
    else:
        model = LinearClassifier()
        model.init(x)
        return model
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    return model


MODELS = ("mlp", "cnn", "batchnorm", "dict", "override")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, elegy.Model]]:
    folder = tmp_path_factory.mktemp("exports")
    models = {}
    for name in MODELS:
        model = _build(name)
        model.export(folder / name)
        models[name] = model
    return folder, models


# ---------------------------------------------------------------------------- serving


_SERVER = """
import importlib.abc, importlib.util, json, sys
from pathlib import Path

BLOCKED = {"equinox", "optax", "eqx_elegy", "test_export", "helpers", "tests", "conftest"}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"serving an export must not import {name}")
        return None

sys.meta_path.insert(0, Refuse())
spec = importlib.util.spec_from_file_location("serving", sys.argv[1])
serving = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serving)
import jax, numpy as np

folder, report = Path(sys.argv[2]), {}
for name in sys.argv[3:]:
    f = serving.load_exported(folder / name)
    x_tree = f.exported.in_tree.children()[0].children()[1]
    with np.load(folder / f"{name}.inputs.npz") as data:
        leaves = [data[f"x{i}"] for i in range(len(data.files))]
    out = {}
    for n in SIZES:
        y = f(jax.tree.unflatten(x_tree, [leaf[:n] for leaf in leaves]))
        for i, leaf in enumerate(jax.tree.leaves(y)):
            out[f"y{n}_{i}"] = leaf
        report[name] = str(jax.tree.structure(y))
    # The documented three lines, with plain jax.export and numpy:
    exp = jax.export.deserialize(bytearray((folder / name / "predict.jaxexport").read_bytes()))
    weights = dict(np.load(folder / name / "weights.npz"))
    plain = exp.call(weights, jax.tree.unflatten(x_tree, [leaf[:7] for leaf in leaves]))
    for i, leaf in enumerate(jax.tree.leaves(plain)):
        out[f"plain_{i}"] = np.asarray(leaf)
    np.savez(folder / f"{name}.outputs.npz", **out)
blocked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
report["_imported"] = blocked
print(json.dumps(report))
""".replace("SIZES", repr(SIZES))


def _serve_in_subprocess(folder: Path, names: tuple[str, ...]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", _SERVER, str(ROOT / "eqx_elegy" / "_serving.py"), str(folder)]
        + list(names),
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_served_without_the_model_code_equals_predict(exported):
    folder, models = exported
    for name in models:
        leaves = jax.tree.leaves(_inputs(name, max(SIZES)))
        np.savez(folder / f"{name}.inputs.npz", **{f"x{i}": leaf for i, leaf in enumerate(leaves)})
    report = _serve_in_subprocess(folder, MODELS)
    assert report.pop("_imported") == []
    for name, model in models.items():
        outputs = np.load(folder / f"{name}.outputs.npz")
        x = _inputs(name, max(SIZES))
        for n in SIZES:
            expected = model.predict(jax.tree.map(lambda a, n=n: a[:n], x))
            assert report[name] == str(jax.tree.structure(expected)), name
            for i, leaf in enumerate(jax.tree.leaves(expected)):
                got = outputs[f"y{n}_{i}"]
                assert got.shape == leaf.shape and got.dtype == leaf.dtype, (name, n, i)
                np.testing.assert_allclose(got, leaf, atol=1e-5, rtol=0, err_msg=f"{name} {n}")
        expected = model.predict(jax.tree.map(lambda a: a[:7], x))
        for i, leaf in enumerate(jax.tree.leaves(expected)):
            np.testing.assert_allclose(outputs[f"plain_{i}"], leaf, atol=1e-5, rtol=0)


_RECIPE = """
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"equinox", "optax", "eqx_elegy"}:
            raise ImportError(f"the plain jax.export recipe must not import {name}")
        return None

sys.meta_path.insert(0, Refuse())
import jax
import numpy as np

x = np.load("x.npy")
RECIPE
np.save("logits.npy", np.asarray(logits))
"""


def _documented_recipe() -> str:
    """The code block of docs/export.md's "Serving with plain JAX" section."""
    text = (ROOT / "docs" / "export.md").read_text()
    section = text.split("## Serving with plain JAX", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_plain_jax_recipe_runs_without_eqx_elegy(exported, tmp_path):
    """The docs' three lines, verbatim, where neither eqx_elegy nor equinox can be imported."""
    folder, models = exported
    recipe = _documented_recipe()
    assert len(recipe.strip().splitlines()) == 3, recipe
    shutil.copytree(folder / "mlp", tmp_path / "digits-mlp")
    x = digits(9)[0]
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", _RECIPE.replace("RECIPE", recipe)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    logits = np.load(tmp_path / "logits.npy")
    np.testing.assert_allclose(logits, models["mlp"].predict(x[:5]), atol=1e-5, rtol=0)


def test_load_exported_in_process_matches_predict_and_describes_io(exported):
    folder, models = exported
    f = elegy.load_exported(folder / "dict")
    assert isinstance(f, elegy.ExportedModel)
    assert f.inputs == [
        {"path": "x['image']", "shape": ["batch", 64], "dtype": "float32"},
        {"path": "x['meta']", "shape": ["batch", 3], "dtype": "float32"},
    ]
    assert f.outputs == [
        {"path": "y_pred['aux'][0]", "shape": ["batch", 2], "dtype": "float32"},
        {"path": "y_pred['aux'][1]", "shape": ["batch", 4], "dtype": "float32"},
        {"path": "y_pred['logits']", "shape": ["batch", 10], "dtype": "float32"},
    ]
    assert f.platforms == ("cpu",)
    x = _inputs("dict", 5)
    y = f(x)
    assert isinstance(y["aux"], tuple) and isinstance(y["logits"], np.ndarray)
    expected = models["dict"].predict(x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), y, expected)


def test_batchnorm_exports_its_inference_statistics(exported):
    folder, models = exported
    manifest = json.loads((folder / "batchnorm" / MANIFEST).read_text())
    paths = [a["path"] for a in manifest["weights"]["arrays"]]
    assert any(p.startswith("states.net_states") for p in paths), paths
    # Training moved the running statistics away from their initial values, so an export
    # that used the initial ones (or batch statistics) would not match predict.
    model = models["batchnorm"]
    fresh = _classifier(BatchNormNet(jax.random.key(0)))
    x = _inputs("batchnorm", 16)
    assert not np.allclose(fresh.predict(x), model.predict(x), atol=1e-3)
    np.testing.assert_allclose(
        elegy.load_exported(folder / "batchnorm")(x), model.predict(x), atol=1e-5
    )


def test_only_the_weights_the_prediction_reads_are_stored(exported):
    folder, models = exported
    manifest = json.loads((folder / "mlp" / MANIFEST).read_text())
    table = manifest["weights"]["arrays"]
    assert [a["path"] for a in table] == [
        "states.net_params.layers[0].weight",
        "states.net_params.layers[0].bias",
        "states.net_params.layers[1].weight",
        "states.net_params.layers[1].bias",
    ]
    params = jax.tree.leaves(models["mlp"].states.net_params)
    with np.load(folder / "mlp" / WEIGHTS_FILE) as npz:
        for entry, param in zip(table, params, strict=True):
            np.testing.assert_array_equal(npz[entry["name"]], np.asarray(param))


def test_weights_are_not_baked_into_the_function(tmp_path):
    model = elegy.Model(module=eqx.nn.MLP(64, 10, 512, 2, key=jax.random.key(0)))
    x = digits(8)[0]
    model.init(x)
    model.export(tmp_path / "big")
    function = (tmp_path / "big" / FUNCTION_FILE).stat().st_size
    weights = (tmp_path / "big" / WEIGHTS_FILE).stat().st_size
    assert weights > 1_000_000 and function < weights / 20, (function, weights)
    np.testing.assert_allclose(
        elegy.load_exported(tmp_path / "big")(x), model.predict(x), atol=1e-5
    )


def test_manifest_records_versions_structure_and_checksums(exported):
    folder, _ = exported
    manifest = json.loads((folder / "cnn" / MANIFEST).read_text())
    assert manifest["format"] == "eqx_elegy.export" and manifest["format_version"] == 1
    assert manifest["versions"]["jax"] == jax.__version__
    assert manifest["versions"]["eqx_elegy"] == elegy.__version__
    assert manifest["model_class"] == "eqx_elegy._model.Model"
    assert manifest["step"] == "pred_step"
    assert manifest["inputs"] == [{"path": "x", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert manifest["outputs"] == [{"path": "y_pred", "shape": ["batch", 10], "dtype": "float32"}]
    for key, name in (("function", FUNCTION_FILE), ("weights", WEIGHTS_FILE)):
        digest = hashlib.sha256((folder / "cnn" / name).read_bytes()).hexdigest()
        assert manifest[key] == {**manifest[key], "file": name, "sha256": digest}


# ---------------------------------------------------------------------------- more models


def test_random_keys_and_bfloat16_weights_travel_as_plain_arrays(tmp_path):
    class Noisy(elegy.Model):
        """Reads a key from the states in inference: the key must be exported."""

        def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
            key, _ = states.rng.next()
            noise = jax.random.uniform(key, (x.shape[1],))
            w = states.net_params.astype(jnp.float32)
            return x * noise + w, states

    model = Noisy(
        states=elegy.States(rng=elegy.RNGSeq(5), net_params=jnp.full(64, 0.5, jnp.bfloat16))
    )
    x = digits(9)[0]
    expected = model.predict(x, batch_size=9)  # one batch: predict's first keys
    model.export(tmp_path / "noisy")
    table = json.loads((tmp_path / "noisy" / MANIFEST).read_text())["weights"]["arrays"]
    kinds = {(a["model_dtype"], a["dtype"]) for a in table}
    assert ("bfloat16", "uint16") in kinds
    assert any(m.startswith("key<") and d == "uint32" for m, d in kinds), kinds
    np.testing.assert_array_equal(elegy.load_exported(tmp_path / "noisy")(x), expected)


def test_a_module_that_takes_a_key_gets_per_example_keys_for_any_batch(tmp_path):
    k1, k2 = jax.random.split(jax.random.key(0))
    layers = [eqx.nn.Linear(64, 32, key=k1), eqx.nn.Dropout(0.5), eqx.nn.Linear(32, 10, key=k2)]
    model = elegy.Model(module=eqx.nn.Sequential(layers))
    x = digits(33)[0]
    model.init(x)
    model.export(tmp_path / "dropout")  # splits the key into a symbolic number of keys
    f = elegy.load_exported(tmp_path / "dropout")
    for n in SIZES:
        np.testing.assert_allclose(f(x[:n]), model.predict(x[:n]), atol=1e-5)


def test_a_user_filter_jit_step_exports_only_what_it_reads(tmp_path):
    class Jitted(elegy.Model):
        @eqx.filter_jit
        def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
            return jax.vmap(eqx.combine(states.net_params, self.module))(x), states

    model = Jitted(
        module=eqx.nn.MLP(64, 10, 16, 1, key=jax.random.key(1)),
        optimizer=optax.adam(1e-3),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = digits(32)
    model.fit(x, y, epochs=1, verbose=0)
    model.export(tmp_path / "jitted")
    table = json.loads((tmp_path / "jitted" / MANIFEST).read_text())["weights"]["arrays"]
    assert all(a["path"].startswith("states.net_params") for a in table), table
    np.testing.assert_allclose(
        elegy.load_exported(tmp_path / "jitted")(x), model.predict(x), atol=1e-5
    )


class Pair(eqx.Module):
    """A tuple in: (image, a scalar per example)."""

    linear: eqx.nn.Linear

    def __call__(self, x: tuple[Any, Any]) -> Any:
        image, scale = x
        return self.linear(image) * scale


def test_tuple_inputs_export_for_any_batch(tmp_path):
    model = elegy.Model(module=Pair(eqx.nn.Linear(64, 10, key=jax.random.key(2))))
    image = digits(33)[0]
    x = (image, np.linspace(0.5, 2.0, 33, dtype=np.float32))
    model.init(jax.tree.map(lambda a: a[:4], x))
    model.export(tmp_path / "pair")
    f = elegy.load_exported(tmp_path / "pair")
    assert [leaf["path"] for leaf in f.inputs] == ["x[0]", "x[1]"]
    assert [leaf["shape"] for leaf in f.inputs] == [["batch", 64], ["batch"]]
    for n in SIZES:
        batch = jax.tree.map(lambda a, n=n: a[:n], x)
        np.testing.assert_allclose(f(batch), model.predict(batch), atol=1e-5, rtol=0)


def test_a_distributed_model_exports_for_one_device(tmp_path):
    model = mlp_model().distributed(elegy.DataParallel())
    x, y = digits(64)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.export(tmp_path / "dp")
    np.testing.assert_allclose(
        elegy.load_exported(tmp_path / "dp")(x[:5]), model.predict(x[:5]), atol=1e-5
    )


def test_one_artifact_for_cpu_and_cuda_runs_here(tmp_path):
    model = _build("mlp")
    model.export(tmp_path / "both", platforms=("cpu", "cuda"))
    f = elegy.load_exported(tmp_path / "both")
    assert f.platforms == ("cpu", "cuda")
    x = digits(7)[0]
    np.testing.assert_allclose(f(x), model.predict(x), atol=1e-5)


def test_an_export_for_another_platform_is_refused_here(tmp_path):
    model = _build("override")
    model.export(tmp_path / "gpu", platforms="cuda")
    with pytest.raises(elegy.ExportError) as info:
        elegy.load_exported(tmp_path / "gpu")
    assert str(info.value) == (
        f"The export at {tmp_path / 'gpu'} was lowered for ['cuda'], and jax runs on 'cpu' "
        "here. Export it with platforms=('cpu', ...) to run it here."
    )


# ---------------------------------------------------------------------------- input structure


def test_the_input_structure_is_remembered_from_the_first_data(tmp_path):
    model = elegy.Model(module=TwoInputs(jax.random.key(0)))
    with pytest.raises(elegy.ExportError, match=r"Model.export needs the structure"):
        model.export(tmp_path / "early")
    assert not (tmp_path / "early").exists()
    model.init(_inputs("dict", 4))
    spec = model._input_spec
    assert spec.shapes == ((64,), (3,)) and [d.name for d in spec.dtypes] == ["float32"] * 2
    # Copies keep it, and so does a reset (the model is still built for these inputs).
    copies = (
        copy.deepcopy(model),
        pickle.loads(pickle.dumps(model)),
        model.distributed(elegy.DataParallel()),
    )
    for copied in copies:
        assert copied._input_spec == spec
    model.reset()
    assert model._input_spec == spec


def test_a_generator_fit_remembers_inputs_and_float64_is_canonical(tmp_path):
    model = mlp_model()
    x, y = digits(64)

    def batches():
        for i in range(0, 64, 16):
            yield x[i : i + 16].astype(np.float64), y[i : i + 16]

    model.fit(batches(), epochs=1, steps_per_epoch=4, verbose=0)
    assert model._input_spec.shapes == ((64,),)
    assert model._input_spec.dtypes == (np.dtype("float32"),)
    model.export(tmp_path / "gen")
    f = elegy.load_exported(tmp_path / "gen")
    np.testing.assert_allclose(f(x[:3].astype(np.float64)), model.predict(x[:3]), atol=1e-5)


def test_a_loaded_checkpoint_exports_after_init_with_a_batch(tmp_path):
    trained = _build("mlp")
    trained.save(tmp_path / "ckpt")
    fresh = mlp_model()
    fresh.load(tmp_path / "ckpt")
    with pytest.raises(elegy.ExportError, match="call model.init"):
        fresh.export(tmp_path / "exp")
    x = digits(4)[0]
    fresh.init(x)  # already initialised: changes nothing, records the inputs
    fresh.export(tmp_path / "exp")
    np.testing.assert_allclose(
        elegy.load_exported(tmp_path / "exp")(x), trained.predict(x), atol=1e-5
    )


# ---------------------------------------------------------------------------- export errors


def _states_leaves(model: elegy.Model) -> list[np.ndarray]:
    keys = jax.dtypes.prng_key
    return [
        np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, keys) else a)
        for a in jax.tree.leaves(model.states)
        if eqx.is_array(a)
    ]


def _refusal(target: Path, problem: str) -> str:
    return (
        f"{target} is not an eqx_elegy export ({problem}); refusing to replace it. Nothing "
        "was written; pass a new directory path, or an empty one."
    )


def test_export_refuses_a_path_that_is_not_an_export(tmp_path, exported):
    folder, models = exported
    model = models["override"]
    before = _states_leaves(model)
    file = tmp_path / "file.txt"
    file.write_text("keep me")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me too")
    ckpt = tmp_path / "ckpt"
    models["mlp"].save(ckpt)
    ckpt_files = sorted(p.name for p in ckpt.iterdir())
    grown = Path(shutil.copytree(folder / "mlp", tmp_path / "grown"))
    (grown / "extra.txt").write_text("not part of an export")
    link = tmp_path / "link-to-file"
    link.symlink_to(file)
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for name in ("e.txt", "d.txt", "c.txt", "b.txt", "a.txt"):
        (crowded / name).write_text(name)
    linked = Path(shutil.copytree(folder / "mlp", tmp_path / "linked"))
    (linked / WEIGHTS_FILE).rename(tmp_path / "weights-elsewhere.npz")
    (linked / WEIGHTS_FILE).symlink_to(tmp_path / "weights-elsewhere.npz")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / MANIFEST).write_text('{"format": "someone.else"}')
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        (crowded, "it holds a.txt, b.txt, c.txt, ... and no manifest.json"),
        (linked, "its weights.npz is a symbolic link, not a regular file"),
        (
            foreign,
            f"{foreign} is not an eqx_elegy export: the 'format' of its manifest.json is not "
            "'eqx_elegy.export'.",
        ),
        (fifo, "it is a special file, not a directory"),
        (file, "it is a regular file, not a directory"),
        (link, "it is a regular file, not a directory"),  # links are followed, then checked
        (full, "it holds notes.txt and no manifest.json"),
        (
            ckpt,
            f"{ckpt} is an eqx_elegy checkpoint (written by model.save), not an export; load it "
            "with model.load, or write an export with model.export.",
        ),
        (grown, "it holds extra.txt, which is not part of an export"),
    ]
    for target, problem in cases:
        with pytest.raises(elegy.ExportError) as info:
            model.export(target)
        assert str(info.value) == _refusal(target.resolve(), problem)
    assert file.read_text() == "keep me" and (full / "notes.txt").read_text() == "keep me too"
    assert sorted(p.name for p in ckpt.iterdir()) == ckpt_files
    assert (grown / "extra.txt").exists() and link.is_symlink()
    assert sorted(p.name for p in crowded.iterdir()) == [
        "a.txt",
        "b.txt",
        "c.txt",
        "d.txt",
        "e.txt",
    ]
    assert (linked / WEIGHTS_FILE).is_symlink() and (tmp_path / "weights-elsewhere.npz").is_file()
    for a, b in zip(before, _states_leaves(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_export_leaves_siblings_that_are_not_its_own(tmp_path, exported):
    _, models = exported
    (tmp_path / ".exp.previous").mkdir()
    (tmp_path / ".exp.previous" / "mine.txt").write_text("keep")
    with pytest.raises(elegy.ExportError) as info:
        models["override"].export(tmp_path / "exp")
    assert str(info.value) == (
        f"{tmp_path / '.exp.previous'} is in the way of the export to {tmp_path / 'exp'} (it "
        "holds mine.txt and no manifest.json); an export writes through that name, so it "
        "refuses to remove it. Nothing was written; move it away."
    )
    assert (tmp_path / ".exp.previous" / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "exp").exists()
    # An export's own unfinished files (from a crash while writing) are cleared.
    shutil.rmtree(tmp_path / ".exp.previous")
    (tmp_path / ".exp.exporting").mkdir()
    (tmp_path / ".exp.exporting" / ".eqx_elegy-exporting").touch()
    (tmp_path / ".exp.exporting" / "predict.jaxexport").write_bytes(b"half")
    models["override"].export(tmp_path / "exp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_export_through_a_link_writes_where_it_points(tmp_path, exported):
    _, models = exported
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    models["override"].export(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / MANIFEST).is_file()
    x = _inputs("override", 3)
    np.testing.assert_allclose(
        elegy.load_exported(tmp_path / "link")(x)[0], models["override"].predict(x)[0], atol=1e-6
    )


def test_export_replaces_an_earlier_export_and_accepts_an_empty_directory(tmp_path, exported):
    _, models = exported
    x = digits(5)[0]
    (tmp_path / "exp").mkdir()
    models["override"].export(tmp_path / "exp")
    second = mlp_model()
    second.init(x)
    second.export(tmp_path / "exp")
    np.testing.assert_allclose(
        elegy.load_exported(tmp_path / "exp")(x), second.predict(x), atol=1e-5
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # no leftovers
    # Stopped between its two renames, a replacement leaves the old export beside the
    # path, where load_exported finds it.
    (tmp_path / "exp").rename(tmp_path / ".exp.previous")
    np.testing.assert_allclose(
        elegy.load_exported(tmp_path / "exp")(x), second.predict(x), atol=1e-5
    )


@pytest.mark.parametrize(
    ("platforms", "error", "message"),
    [
        (
            "gpu",
            ValueError,
            "platforms has ['gpu'], which jax.export cannot lower for ('gpu' is 'cuda' or 'rocm' here); use names out of ('cpu', 'cuda', 'rocm', 'tpu').",
        ),
        (
            ("cpu", "metal"),
            ValueError,
            "platforms has ['metal'], which jax.export cannot lower for; use names out of ('cpu', 'cuda', 'rocm', 'tpu').",
        ),
        (("cpu", "cpu"), ValueError, "platforms lists a platform twice: ['cpu', 'cpu']."),
        (
            (),
            TypeError,
            "platforms must be None (the current platform) or a non-empty sequence of platform names out of ('cpu', 'cuda', 'rocm', 'tpu'), e.g. ('cpu', 'cuda'); got ().",
        ),
        (
            3,
            TypeError,
            "platforms must be None (the current platform) or a non-empty sequence of platform names out of ('cpu', 'cuda', 'rocm', 'tpu'), e.g. ('cpu', 'cuda'); got 3.",
        ),
        (
            (None,),
            ValueError,
            "platforms has [None], which jax.export cannot lower for; use names out of ('cpu', 'cuda', 'rocm', 'tpu').",
        ),
    ],
)
def test_bad_platforms_are_refused_before_any_work(tmp_path, platforms, error, message):
    model = LinearClassifier()  # never saw data: the platforms are checked first
    with pytest.raises(error) as info:
        model.export(tmp_path / "exp", platforms=platforms)
    assert str(info.value) == message
    assert not (tmp_path / "exp").exists()


def test_a_platform_the_step_cannot_be_lowered_for(tmp_path):
    class Schur(elegy.Model):
        def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
            return jax.vmap(lambda m: jax.scipy.linalg.schur(m)[0])(x), states

    model = Schur()
    model.predict(np.eye(3, dtype=np.float32)[None].repeat(2, 0))
    with pytest.raises(elegy.ExportError) as info:
        model.export(tmp_path / "exp", platforms=("cpu", "cuda"))
    assert str(info.value).startswith(
        "Schur.pred_step cannot be lowered for platforms ('cpu', 'cuda'): NotImplementedError: "
        "MLIR translation rule for primitive 'schur' not found for platforms ['cuda']"
    )
    assert not (tmp_path / "exp").exists()
    model.export(tmp_path / "exp", platforms="cpu")  # the platform it supports


def _seen(model: elegy.Model, x: Any) -> elegy.Model:
    """`model` as if it had seen `x` (whose prediction cannot even compile here)."""
    object.__setattr__(model, "_input_spec", input_spec(x))
    return model


class IntBatch(elegy.Model):
    def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
        return jnp.zeros((int(x.shape[0]), 2)), states


class DataShaped(elegy.Model):
    def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
        return x[jnp.nonzero(x[:, 0] > 0)[0]], states


class CallsBack(elegy.Model):
    def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
        return jax.pure_callback(np.tanh, jax.ShapeDtypeStruct(x.shape, x.dtype), x), states


class Prints(elegy.Model):
    def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
        jax.debug.print("{}", x.sum())
        return x, states


def test_a_step_that_uses_the_batch_size_as_a_number_gets_a_clear_error(tmp_path):
    model = IntBatch()
    model.predict(np.ones((3, 2), np.float32))  # fine with a concrete batch
    with pytest.raises(elegy.ExportError) as info:
        model.export(tmp_path / "exp")
    message = str(info.value)
    assert message.startswith(
        "IntBatch.pred_step cannot be exported: InconclusiveDimensionOperation: Symbolic "
        "dimension 'batch' used in a context that requires a constant"
    )
    assert message.endswith(
        "The exported function takes any batch size, so the step must not use the batch size "
        "or the data as Python values (int(x.shape[0]), `if` on a shape, shapes that depend on "
        "the data such as jnp.nonzero without size=): use x.shape[0] in jnp operations, -1 in "
        "reshape, or fixed sizes."
    )


def test_a_step_with_data_dependent_shapes_gets_a_clear_error(tmp_path):
    model = _seen(DataShaped(), np.ones((2, 3), np.float32))
    with pytest.raises(elegy.ExportError) as info:
        model.export(tmp_path / "exp")
    assert str(info.value).startswith(
        "DataShaped.pred_step cannot be exported: ConcretizationTypeError: Abstract tracer value"
    )
    assert "jnp.nonzero without size=" in str(info.value)


@pytest.mark.parametrize(
    ("cls", "primitive"), [(CallsBack, "pure_callback"), (Prints, "debug_print")]
)
def test_a_step_with_a_host_callback_gets_a_clear_error(tmp_path, cls, primitive):
    model = _seen(cls(), np.ones((2, 3), np.float32))
    with pytest.raises(elegy.ExportError) as info:
        model.export(tmp_path / "exp")
    assert str(info.value) == (
        f"{cls.__name__}.pred_step cannot be exported: it calls back into Python ({primitive}: "
        "jax.pure_callback, io_callback or jax.debug.print), and an exported function runs "
        "without Python. Remove the callback from the prediction."
    )
    assert not (tmp_path / "exp").exists()


def test_states_whose_buffers_were_donated_are_refused(tmp_path):
    model = LinearClassifier()
    model.init(_inputs("override", 4))
    jax.tree.leaves(model.states.net_params)[1].delete()  # as a donating step leaves them
    with pytest.raises(elegy.ExportError) as info:
        model.export(tmp_path / "exp")
    assert str(info.value) == (
        "model.states holds arrays whose buffers were donated to a compiled step (first: "
        "states.net_params[1]); this happens when a fit is stopped inside a step. Nothing was "
        "exported."
    )
    assert not (tmp_path / "exp").exists()


class Pair2(NamedTuple):
    logits: Any
    probs: Any


class NamedOutput(elegy.Model):
    def pred_step(self, x: Any, states: elegy.States) -> elegy.PredStep:
        return Pair2(x, jax.nn.softmax(x)), states


def test_a_custom_pytree_prediction_gets_a_clear_error(tmp_path):
    model = NamedOutput()
    model.predict(np.ones((2, 3), np.float32))
    with pytest.raises(elegy.ExportError) as info:
        model.export(tmp_path / "exp")
    message = str(info.value)
    assert message.startswith("NamedOutput.pred_step cannot be exported: ")
    assert message.endswith(
        ". Inputs and predictions must be arrays, or dicts, lists and tuples of arrays."
    )
    assert not (tmp_path / "exp").exists()


def test_without_flatbuffers_export_and_load_say_what_to_install(tmp_path, monkeypatch, exported):
    folder, models = exported
    monkeypatch.setitem(sys.modules, "flatbuffers", None)  # `import flatbuffers` now fails
    for call, what in (
        (lambda: models["mlp"].export(tmp_path / "exp"), "Model.export"),
        (lambda: elegy.load_exported(folder / "mlp"), "load_exported"),
    ):
        with pytest.raises(ImportError) as info:
            call()
        assert str(info.value) == (
            f"{what} needs the flatbuffers package, which jax.export (de)serialises with: "
            "pip install 'eqx_elegy[export]' (or pip install flatbuffers)."
        )
    assert not (tmp_path / "exp").exists()


def test_flatbuffers_is_declared_for_export_and_for_the_tests():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in ("export", "test"):
        assert any(r.split(">")[0].strip() == "flatbuffers" for r in extras[extra]), extra


# ---------------------------------------------------------------------------- load errors


@pytest.fixture()
def artifact(exported, tmp_path) -> Path:
    """A private copy of the MLP export, to damage."""
    folder, _ = exported
    return Path(shutil.copytree(folder / "mlp", tmp_path / "mlp"))


def _rewrite(directory: Path, edit: Any) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    edit(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def _load_error(path: Path) -> str:
    with pytest.raises(elegy.ExportError) as info:
        elegy.load_exported(path)
    return str(info.value)


def test_load_refuses_what_is_not_an_export(tmp_path, exported):
    assert _load_error(tmp_path / "nothing") == (
        f"No export found at {tmp_path / 'nothing'}: it is not a directory."
    )
    assert _load_error(tmp_path) == (
        f"{tmp_path} is not an eqx_elegy export: it has no manifest.json (a regular file)."
    )
    _, models = exported
    models["mlp"].save(tmp_path / "ckpt")
    assert _load_error(tmp_path / "ckpt") == (
        f"{tmp_path / 'ckpt'} is an eqx_elegy checkpoint (written by model.save), not an "
        "export; load it with model.load, or write an export with model.export."
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / MANIFEST).write_text('{"format": "someone.else", "files": ["../x"]}')
    assert _load_error(tmp_path / "other") == (
        f"{tmp_path / 'other'} is not an eqx_elegy export: the 'format' of its manifest.json "
        "is not 'eqx_elegy.export'."
    )
    (tmp_path / "other" / MANIFEST).write_text("[not json")
    assert _load_error(tmp_path / "other").startswith(
        f"{tmp_path / 'other' / MANIFEST} is not a valid eqx_elegy export manifest: not valid JSON"
    )


def test_load_refuses_a_newer_format(artifact):
    _rewrite(artifact, lambda m: m.update(format_version=2))
    assert _load_error(artifact) == (
        f"{artifact} is an export of format version 2; this eqx_elegy reads versions up to 1. "
        "Upgrade eqx_elegy to load it."
    )


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda m: m["function"].update(file="../predict.jaxexport"),
            "'function' is not {file, sha256}",
        ),
        (lambda m: m["function"].update(file=".hidden"), "'function' is not {file, sha256}"),
        (lambda m: m["weights"].update(sha256="abc"), "'weights' is not {file, sha256, arrays}"),
        (
            lambda m: m["weights"]["arrays"][0].update(shape=[-1]),
            "'weights' is not {file, sha256, arrays}",
        ),
        (lambda m: m.update(inputs={"x": 1}), "'inputs' is not a list of {path, shape, dtype}"),
        (lambda m: m["outputs"][0].pop("dtype"), "'outputs' is not a list of {path, shape, dtype}"),
        (lambda m: m.update(platforms=[]), "'platforms' is not a list of platform names"),
        (lambda m: m.update(format_version="1"), "format_version '1' is not a positive integer"),
    ],
)
def test_load_refuses_a_malformed_manifest(artifact, edit, problem):
    _rewrite(artifact, edit)
    assert _load_error(artifact) == (
        f"{artifact / MANIFEST} is not a valid eqx_elegy export manifest: {problem}. The export "
        "is damaged or was not written by Model.export; export the model again."
    )


@pytest.mark.parametrize("name", [FUNCTION_FILE, WEIGHTS_FILE])
def test_load_refuses_a_corrupted_or_missing_file(artifact, name):
    data = bytearray((artifact / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (artifact / name).write_bytes(bytes(data))
    assert _load_error(artifact) == (
        f"{artifact / name} does not match the SHA-256 in {artifact / MANIFEST}: the file is "
        "corrupt, was changed after exporting, or comes from another export. Export the model "
        "again."
    )
    (artifact / name).unlink()
    assert _load_error(artifact) == (
        f"{artifact / name} is missing or not a regular file; the export at {artifact} is "
        "incomplete."
    )


def test_load_refuses_a_symlinked_file(artifact, tmp_path):
    moved = tmp_path / "weights-elsewhere.npz"
    (artifact / WEIGHTS_FILE).rename(moved)
    (artifact / WEIGHTS_FILE).symlink_to(moved)
    assert "is missing or not a regular file" in _load_error(artifact)


def test_load_refuses_a_symlinked_manifest_and_never_follows_it(artifact, tmp_path):
    moved = tmp_path / "manifest-elsewhere.json"
    (artifact / MANIFEST).rename(moved)
    (artifact / MANIFEST).symlink_to(moved)  # a valid manifest, through a link
    assert _load_error(artifact) == (
        f"{artifact} is not an eqx_elegy export: it has no manifest.json (a regular file)."
    )


def test_load_refuses_a_named_pipe_without_blocking(artifact):
    (artifact / FUNCTION_FILE).unlink()
    os.mkfifo(artifact / FUNCTION_FILE)  # nobody writes to it: reading it would hang
    assert _load_error(artifact) == (
        f"{artifact / FUNCTION_FILE} is missing or not a regular file; the export at "
        f"{artifact} is incomplete."
    )


def _fix_checksum(directory: Path, key: str, name: str) -> None:
    digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    _rewrite(directory, lambda m: m[key].update(sha256=digest))


def test_load_refuses_a_truncated_function_even_with_its_checksum(artifact):
    data = (artifact / FUNCTION_FILE).read_bytes()
    (artifact / FUNCTION_FILE).write_bytes(data[: len(data) // 3])
    _fix_checksum(artifact, "function", FUNCTION_FILE)
    assert _load_error(artifact).startswith(
        f"{artifact / FUNCTION_FILE} could not be deserialised by jax.export ("
    )


def test_load_refuses_files_from_different_exports(artifact, exported, tmp_path):
    folder, _ = exported
    # The function of another model, with a manifest that vouches for it.
    shutil.copy(folder / "cnn" / FUNCTION_FILE, artifact / FUNCTION_FILE)
    _fix_checksum(artifact, "function", FUNCTION_FILE)
    message = _load_error(artifact)
    assert message.startswith(
        f"The function in {artifact / FUNCTION_FILE} does not match the rest of the export: "
        "it takes w00000 as float32[4, 1, 3, 3], the weights file holds float32[32, 64]."
    )
    assert message.endswith("The files come from different exports; export the model again.")
    # Weights of another shape under the names the manifest lists.
    other = Path(shutil.copytree(folder / "mlp", tmp_path / "other"))
    with np.load(other / WEIGHTS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["w00003"] = np.zeros(11, np.float32)
    np.savez(other / WEIGHTS_FILE, **arrays)
    _fix_checksum(other, "weights", WEIGHTS_FILE)
    assert _load_error(other) == (
        f"{other / WEIGHTS_FILE} holds w00003 (states.net_params.layers[1].bias) as "
        "float32[11] where manifest.json says float32[10]; the export is damaged."
    )
    arrays.pop("w00003")
    np.savez(other / WEIGHTS_FILE, **arrays, extra=np.zeros(1))
    _fix_checksum(other, "weights", WEIGHTS_FILE)
    assert _load_error(other) == (
        f"{other / WEIGHTS_FILE} holds other arrays than manifest.json lists (missing: "
        "['w00003'], unexpected: ['extra']); the export is damaged."
    )


def test_load_refuses_a_huge_or_deeply_nested_manifest(artifact):
    (artifact / MANIFEST).write_bytes(b" " * (16 << 20) + b"{}")
    assert _load_error(artifact) == (
        f"{artifact / MANIFEST} is larger than 16 MiB; it is not an export's."
    )
    (artifact / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    assert _load_error(artifact) == (
        f"{artifact / MANIFEST} is not a valid eqx_elegy export manifest: not valid JSON (nested "
        "too deeply). The export is damaged or was not written by Model.export; export the model "
        "again."
    )


def _mismatch(artifact: Path, problem: str) -> str:
    return (
        f"The function in {artifact / FUNCTION_FILE} does not match the rest of the export: "
        f"{problem}. The files come from different exports; export the model again."
    )


def test_load_refuses_a_manifest_that_does_not_describe_the_function(artifact):
    manifest = json.loads((artifact / MANIFEST).read_text())
    original = json.dumps(manifest)
    edits = [
        (
            lambda m: m["inputs"][0].update(shape=["batch", 65]),
            "its inputs are [(['batch', 64], 'float32')], manifest.json lists "
            "[(['batch', 65], 'float32')]",
        ),
        (
            lambda m: m["outputs"][0].update(dtype="float16"),
            "its outputs are [(['batch', 10], 'float32')], manifest.json lists "
            "[(['batch', 10], 'float16')]",
        ),
        (
            lambda m: m.update(platforms=["cpu", "cuda"]),
            "it was lowered for ['cpu'], not ['cpu', 'cuda']",
        ),
    ]
    for edit, problem in edits:
        (artifact / MANIFEST).write_text(original)
        _rewrite(artifact, edit)
        assert _load_error(artifact) == _mismatch(artifact, problem)


def test_load_refuses_a_function_that_takes_other_arguments(artifact):
    original = (artifact / FUNCTION_FILE).read_bytes()
    # A function that takes x alone, with a manifest that vouches for its bytes.
    other = jax.export.export(jax.jit(lambda x: x * 2))(jax.ShapeDtypeStruct((3, 64), jnp.float32))
    (artifact / FUNCTION_FILE).write_bytes(bytes(other.serialize()))
    _fix_checksum(artifact, "function", FUNCTION_FILE)
    assert _load_error(artifact).startswith(
        f"The function in {artifact / FUNCTION_FILE} does not match the rest of the export: it "
        "takes PyTreeDef(((*,), {})), not (weights, x)."
    )
    # Weights that the function does not take: one array fewer in the file and manifest.
    (artifact / FUNCTION_FILE).write_bytes(original)
    _fix_checksum(artifact, "function", FUNCTION_FILE)
    with np.load(artifact / WEIGHTS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "w00003"}
    np.savez(artifact / WEIGHTS_FILE, **arrays)
    _fix_checksum(artifact, "weights", WEIGHTS_FILE)
    _rewrite(artifact, lambda m: m["weights"]["arrays"].pop())
    assert _load_error(artifact) == _mismatch(
        artifact,
        "it takes the weights PyTreeDef({'w00000': *, 'w00001': *, 'w00002': *, 'w00003': *}), "
        "not the arrays manifest.json lists",
    )


def test_load_never_unpickles(artifact):
    with np.load(artifact / WEIGHTS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["w00000"] = np.array([{"evil": 1}] * 2048, dtype=object).reshape(32, 64)
    np.savez(artifact / WEIGHTS_FILE, **arrays)
    _fix_checksum(artifact, "weights", WEIGHTS_FILE)
    assert "could not be read as .npz (Object arrays cannot be loaded when allow_pickle=False)" in (
        _load_error(artifact)
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_damage_to_the_manifest_is_an_export_error(artifact, data):
    manifest = json.loads((artifact / MANIFEST).read_text())
    original = json.dumps(manifest)
    # Replace one value anywhere in the manifest with arbitrary JSON.
    spots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            spots.append((node, key))
            if isinstance(value, dict | list):
                walk(value)

    walk(manifest)
    node, key = data.draw(st.sampled_from(spots))
    node[key] = data.draw(_JSON)
    try:
        (artifact / MANIFEST).write_text(json.dumps(manifest))
        try:
            elegy.load_exported(artifact)
        except elegy.ExportError:
            pass
    finally:
        (artifact / MANIFEST).write_text(original)


# ---------------------------------------------------------------------------- call errors


def test_calls_with_bad_inputs_get_clear_errors(exported):
    folder, models = exported
    f = elegy.load_exported(folder / "dict")
    good = _inputs("dict", 3)
    with pytest.raises(TypeError) as info:
        f(good["image"])
    assert str(info.value) == (
        "x must have the structure the model was exported with (x['image'], x['meta']), got "
        "PyTreeDef(*)."
    )
    with pytest.raises(ValueError) as info:
        f({"image": good["image"], "meta": good["meta"][:2]})
    assert str(info.value) == (
        "The leaves of x have different batch sizes [2, 3]; every leaf needs the same number "
        "of examples along its first axis."
    )
    with pytest.raises(ValueError) as info:
        f({"image": good["image"][:, :10], "meta": good["meta"]})
    assert str(info.value) == (
        "x['image'] has shape [3, 10]; the exported model takes ['batch', 64] (`batch` is any "
        "number of examples)."
    )
    with pytest.raises(TypeError) as info:
        f({"image": good["image"].astype(np.complex64), "meta": good["meta"]})
    assert str(info.value) == (
        "x['image'] has dtype complex64; the exported model takes float32 (convert it, e.g. "
        "with .astype(np.float32))."
    )
    with pytest.raises(ValueError, match=r"x is empty \(0 examples\)"):
        f({"image": good["image"][:0], "meta": good["meta"][:0]})
    # Nested lists (e.g. from JSON) and integer or float64 arrays are converted as jax would.
    as_lists = {"image": good["image"].tolist(), "meta": good["meta"].astype(np.float64)}
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
        f(as_lists),
        models["dict"].predict(good),
    )
