"""eqx_elegy: Elegy's Keras-style model API on equinox.

`Model` gives `fit`, `evaluate`, `predict`, `summary`, callbacks and checkpoints over pure,
overridable, typed step methods; `States` is the pytree those steps thread through.
"""

from . import callbacks as callbacks
from . import data as data
from . import losses as losses
from . import metrics as metrics
from . import regularizers as regularizers
from ._distributed import FSDP as FSDP
from ._distributed import DataParallel as DataParallel
from ._distributed import gather_to_host as gather_to_host
from ._distributed import initialize_distributed as initialize_distributed
from ._jit import JitSteps as JitSteps
from ._loop import LazyLogs as LazyLogs
from ._model import Model as Model
from ._population import Population as Population
from ._savedir import CheckpointError as CheckpointError
from ._serving import ExportedModel as ExportedModel
from ._serving import ExportError as ExportError
from ._serving import load_exported as load_exported
from ._states import RNGSeq as RNGSeq
from ._states import States as States
from ._steps import GradStep as GradStep
from ._steps import InitStep as InitStep
from ._steps import Logs as Logs
from ._steps import PredStep as PredStep
from ._steps import StepOutputError as StepOutputError
from ._steps import TestStep as TestStep
from ._steps import TrainStep as TrainStep
from ._strategy import DefaultStrategy as DefaultStrategy
from ._strategy import Strategy as Strategy
from ._strategy import is_main_process as is_main_process
from ._summary import SummaryRow as SummaryRow
from ._version import __version__ as __version__
from .callbacks import History as History
