"""Loss functions with Keras' names and numbers."""

from ._losses import Loss as Loss
from ._losses import MeanSquaredError as MeanSquaredError
from ._losses import SparseCategoricalCrossentropy as SparseCategoricalCrossentropy
