"""Callbacks that observe and steer fit/evaluate/predict, with Keras' hooks."""

from ._backup import BackupAndRestore as BackupAndRestore
from ._callback import Callback as Callback
from ._callback import CallbackList as CallbackList
from ._csv_logger import CSVLogger as CSVLogger
from ._early_stopping import EarlyStopping as EarlyStopping
from ._history import History as History
from ._lambda import LambdaCallback as LambdaCallback
from ._lr_scheduler import LearningRateScheduler as LearningRateScheduler
from ._model_checkpoint import ModelCheckpoint as ModelCheckpoint
from ._progbar import ProgbarLogger as ProgbarLogger
from ._reduce_lr import ReduceLROnPlateau as ReduceLROnPlateau
from ._tensorboard import TensorBoard as TensorBoard
from ._terminate_on_nan import TerminateOnNaN as TerminateOnNaN
