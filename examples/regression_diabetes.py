"""Regression on scikit-learn's diabetes data, with early stopping.

A small MLP predicts disease progression one year on from ten measurements. The loss is
the mean squared error on standardised targets; `EarlyStopping` watches the validation
loss, stops when it has not improved for `patience` epochs, and puts back the
parameters of the best epoch. For comparison, the script also prints the R^2 of an
ordinary least-squares linear regression on the same split.

    python examples/regression_diabetes.py [--quick]
"""

import argparse

import equinox as eqx
import jax
import numpy as np
import optax
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import eqx_elegy as elegy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    x_scaler = StandardScaler().fit(x_train)
    y_scaler = StandardScaler().fit(y_train[:, None])
    x_train, x_test = (x_scaler.transform(a).astype(np.float32) for a in (x_train, x_test))
    targets = y_scaler.transform(y_train[:, None]).astype(np.float32)  # shape (n, 1)

    model = elegy.Model(
        module=eqx.nn.MLP(10, 1, width_size=16, depth=1, key=jax.random.key(0)),
        loss=elegy.losses.MeanSquaredError(),
        optimizer=optax.adamw(1e-3, weight_decay=0.1),
    )
    early_stopping = elegy.callbacks.EarlyStopping(
        monitor="val_loss", patience=20, restore_best_weights=True
    )
    history = model.fit(
        x_train,
        targets,
        epochs=2 if args.quick else 500,
        batch_size=32,
        validation_split=0.2,
        callbacks=[early_stopping],
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    val_loss = history.history["val_loss"]
    print(f"stopped after {len(val_loss)} epochs; best val_loss {min(val_loss):.4f}")

    predicted = y_scaler.inverse_transform(model.predict(x_test)).ravel()
    rmse = float(np.sqrt(np.mean((predicted - y_test) ** 2)))
    print(f"held-out RMSE: {rmse:.1f} (targets range {y.min():.0f}..{y.max():.0f})")
    baseline = LinearRegression().fit(x_train, y_train).predict(x_test)
    print(f"least-squares linear regression R^2, for comparison: {r2_score(y_test, baseline):.4f}")
    print(f"held-out R^2: {r2_score(y_test, predicted):.4f}")


if __name__ == "__main__":
    main()
