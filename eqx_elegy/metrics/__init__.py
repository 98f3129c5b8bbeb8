"""Pure stateful metrics: `init() -> state`, `update(state, y_true, y_pred, sample_weight)`,
`compute(state) -> value`, with the class names and arguments of `keras.metrics`."""

from ._accuracy import Accuracy as Accuracy
from ._accuracy import BinaryAccuracy as BinaryAccuracy
from ._accuracy import CategoricalAccuracy as CategoricalAccuracy
from ._accuracy import MeanAbsoluteError as MeanAbsoluteError
from ._accuracy import MeanSquaredError as MeanSquaredError
from ._accuracy import SparseCategoricalAccuracy as SparseCategoricalAccuracy
from ._accuracy import SparseTopKCategoricalAccuracy as SparseTopKCategoricalAccuracy
from ._accuracy import TopKCategoricalAccuracy as TopKCategoricalAccuracy
from ._fscore import F1 as F1
from ._fscore import F1Score as F1Score
from ._fscore import FBetaScore as FBetaScore
from ._iou import BinaryIoU as BinaryIoU
from ._iou import IoU as IoU
from ._iou import MeanIoU as MeanIoU
from ._iou import OneHotIoU as OneHotIoU
from ._iou import OneHotMeanIoU as OneHotMeanIoU
from ._metric import Mean as Mean
from ._metric import MeanMetricWrapper as MeanMetricWrapper
from ._metric import Metric as Metric
from ._metric import Sum as Sum
from ._thresholds import AUC as AUC
from ._thresholds import FalseNegatives as FalseNegatives
from ._thresholds import FalsePositives as FalsePositives
from ._thresholds import Precision as Precision
from ._thresholds import PrecisionAtRecall as PrecisionAtRecall
from ._thresholds import Recall as Recall
from ._thresholds import RecallAtPrecision as RecallAtPrecision
from ._thresholds import SensitivityAtSpecificity as SensitivityAtSpecificity
from ._thresholds import SpecificityAtSensitivity as SpecificityAtSensitivity
from ._thresholds import TrueNegatives as TrueNegatives
from ._thresholds import TruePositives as TruePositives
