"""Serve a trained model without its code: `model.export`, then predictions over HTTP.

Trains an MLP on scikit-learn's 8x8 digits and exports its prediction with
`model.export`: a `jax.export` artifact with a symbolic batch dimension, its weights and
a manifest. A tiny standard-library HTTP server (`http.server`), started as a subprocess
of this script with `--serve`, loads the export with `elegy.load_exported` (it never sees
the model's definition or training code) and answers `POST /predict` with JSON. The
script queries it over loopback with batches of several sizes, checks the answers
against `model.predict`, shows the error a malformed request gets, and scores the served
predictions on the held-out digits.

    python examples/export_and_serve.py [--quick] [--export-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np


def train_and_export(folder: Path, quick: bool) -> tuple[Any, np.ndarray, np.ndarray]:
    """Train the model, export it to `folder`; return it with the held-out data."""
    import equinox as eqx
    import jax
    import optax
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import eqx_elegy as elegy

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0
    )
    model = elegy.Model(
        module=eqx.nn.MLP(64, 10, width_size=128, depth=2, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.fit(
        x_train,
        y_train,
        epochs=1 if quick else 30,
        batch_size=64,
        steps_per_epoch=3 if quick else None,
        verbose=0,
    )
    model.export(folder)  # the prediction, for any batch size, and its weights
    print(f"exported to {folder}: {sorted(p.name for p in folder.iterdir())}")
    return model, x_test, y_test


# ---------------------------------------------------------------------------- the server


def serve(folder: str) -> None:
    """Answer `POST /predict` (`{"x": [[64 floats], ...]}` -> `{"y_pred": ..., "label":
    ...}`) and `GET /metadata` from the export in `folder`, on a free loopback port that
    is printed first."""
    import eqx_elegy as elegy

    predict = elegy.load_exported(folder)

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/metadata":
                return self._reply(404, {"error": f"no such resource {self.path}"})
            self._reply(200, {"inputs": predict.inputs, "outputs": predict.outputs})

        def do_POST(self) -> None:
            if self.path != "/predict":
                return self._reply(404, {"error": f"no such resource {self.path}"})
            try:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                logits = predict(request["x"])
            except (ValueError, TypeError, KeyError) as error:  # the caller's mistake
                return self._reply(400, {"error": f"{type(error).__name__}: {error}"})
            self._reply(200, {"y_pred": logits.tolist(), "label": logits.argmax(-1).tolist()})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no line per request on stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------- the client


def ask(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the server; returns the status and the decoded JSON reply."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def query(server: subprocess.Popen[str], model: Any, x_test: Any, y_test: Any) -> float:
    """Query the `server` subprocess; return the accuracy of its held-out predictions."""
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.strip():
        raise RuntimeError(f"the server did not start (exit status {server.wait()})")
    port = int(line)
    _, metadata = ask(port, "GET", "/metadata")
    print("the server takes", metadata["inputs"], "and returns", metadata["outputs"])
    for n in (1, 7, 33):
        status, reply = ask(port, "POST", "/predict", {"x": x_test[:n].tolist()})
        gap = np.abs(np.array(reply["y_pred"]) - model.predict(x_test[:n])).max()
        print(f"batch of {n:2d}: HTTP {status}, largest gap to model.predict {gap:.1e}")
        assert status == 200 and gap < 1e-5
    status, reply = ask(port, "POST", "/predict", {"x": x_test[:2, :10].tolist()})
    print(f"a malformed request: HTTP {status}: {reply['error']}")
    status, reply = ask(port, "POST", "/predict", {"x": x_test.tolist()})
    assert status == 200, reply
    return float(np.mean(np.array(reply["label"]) == y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    parser.add_argument("--export-dir", help="where to export (default: a temporary folder)")
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.export_dir or Path(scratch) / "digits-mlp")
        model, x_test, y_test = train_and_export(folder, args.quick)
        command = [sys.executable, "-W", "error", __file__, "--serve", str(folder)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
            try:
                accuracy = query(server, model, x_test, y_test)
            finally:
                server.terminate()
    print(f"served held-out accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
