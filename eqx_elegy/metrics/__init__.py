"""Stateful metrics: pure `init`/`update`/`compute` with state in `states.metrics_states`."""

from ._metrics import Accuracy as Accuracy
from ._metrics import Mean as Mean
from ._metrics import Metric as Metric
