"""Parameter penalties for `loss=`: `regularizer(net_params) -> scalar`."""

from ._regularizers import L1 as L1
from ._regularizers import L1L2 as L1L2
from ._regularizers import L2 as L2
from ._regularizers import Regularizer as Regularizer
