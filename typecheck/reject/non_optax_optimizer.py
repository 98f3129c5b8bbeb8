"""`optimizer=` takes an optax GradientTransformation: a name, an optax factory that was
not called, or another library's optimizer object is rejected."""

import optax

import eqx_elegy as elegy


class SGD:
    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate


by_name = elegy.Model(optimizer="adam")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
not_called = elegy.Model(optimizer=optax.adam)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
foreign = elegy.Model(optimizer=SGD(0.1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
