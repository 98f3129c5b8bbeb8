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
    MeanAbsoluteError as MeanAbsoluteError,
)
from ._accuracy import (
    MeanSquaredError as MeanSquaredError,
)
from ._accuracy import (
    SparseCategoricalAccuracy as SparseCategoricalAccuracy,
)
from ._confusion import AUC as AUC
from ._confusion import F1 as F1
from ._confusion import Precision as Precision
from ._confusion import Recall as Recall
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
