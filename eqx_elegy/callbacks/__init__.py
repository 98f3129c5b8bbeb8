"""Callbacks that observe and steer fit/evaluate/predict, with Keras' hooks."""

from ._callback import Callback as Callback
from ._callback import CallbackList as CallbackList
from ._history import History as History
from ._progbar import ProgbarLogger as ProgbarLogger
