"""Losses with Keras' names and numbers: `loss(y_true, y_pred, sample_weight=None)`."""

from ._loss import Loss as Loss
from ._loss import LossFunction as LossFunction
from ._losses import (
    BinaryCrossentropy as BinaryCrossentropy,
)
from ._losses import (
    CategoricalCrossentropy as CategoricalCrossentropy,
)
from ._losses import (
    CosineSimilarity as CosineSimilarity,
)
from ._losses import (
    Huber as Huber,
)
from ._losses import (
    MeanAbsoluteError as MeanAbsoluteError,
)
from ._losses import (
    MeanAbsolutePercentageError as MeanAbsolutePercentageError,
)
from ._losses import (
    MeanSquaredError as MeanSquaredError,
)
from ._losses import (
    MeanSquaredLogarithmicError as MeanSquaredLogarithmicError,
)
from ._losses import (
    SparseCategoricalCrossentropy as SparseCategoricalCrossentropy,
)
