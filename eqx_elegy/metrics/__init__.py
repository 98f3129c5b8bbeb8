"""Pure stateful metrics: `init() -> state`, `update(state, y_true, y_pred, sample_weight)`,
`compute(state) -> scalar`."""

from ._accuracy import (
    Accuracy as Accuracy,
)
from ._accuracy import (
    BinaryAccuracy as BinaryAccuracy,
)
from ._accuracy import (
    CategoricalAccuracy as CategoricalAccuracy,
)
from ._accuracy import (
    SparseCategoricalAccuracy as SparseCategoricalAccuracy,
)
from ._confusion import AUC as AUC
from ._confusion import F1 as F1
from ._confusion import Precision as Precision
from ._confusion import Recall as Recall
from ._correlation import ConcordanceCorrelation as ConcordanceCorrelation
from ._correlation import PearsonCorrelation as PearsonCorrelation
from ._loss_metrics import BinaryCrossentropy as BinaryCrossentropy
from ._loss_metrics import CategoricalCrossentropy as CategoricalCrossentropy
from ._loss_metrics import CategoricalHinge as CategoricalHinge
from ._loss_metrics import Hinge as Hinge
from ._loss_metrics import KLDivergence as KLDivergence
from ._loss_metrics import LogCoshError as LogCoshError
from ._loss_metrics import MeanAbsoluteError as MeanAbsoluteError
from ._loss_metrics import MeanAbsolutePercentageError as MeanAbsolutePercentageError
from ._loss_metrics import MeanSquaredError as MeanSquaredError
from ._loss_metrics import MeanSquaredLogarithmicError as MeanSquaredLogarithmicError
from ._loss_metrics import Poisson as Poisson
from ._loss_metrics import SparseCategoricalCrossentropy as SparseCategoricalCrossentropy
from ._loss_metrics import SquaredHinge as SquaredHinge
from ._metric import (
    Mean as Mean,
)
from ._metric import (
    MeanMetricWrapper as MeanMetricWrapper,
)
from ._metric import (
    Metric as Metric,
)
from ._metric import (
    Sum as Sum,
)
from ._regression import CosineSimilarity as CosineSimilarity
from ._regression import R2Score as R2Score
from ._regression import RootMeanSquaredError as RootMeanSquaredError
