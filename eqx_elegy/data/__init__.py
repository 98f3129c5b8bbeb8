"""Data sources for fit/evaluate/predict behind one adapter interface.

Arrays and pytrees of arrays, generators and any iterable of batches (grain datasets and
loaders, PyTorch DataLoaders), and `Sequence`s indexed by batch; see `adapter_for` for
how each is recognised and `prefetch` for how batches are read ahead of the step.
"""

from ._adapter import Batch as Batch
from ._adapter import Chunk as Chunk
from ._adapter import DataAdapter as DataAdapter
from ._arrays import ArrayAdapter as ArrayAdapter
from ._checks import MAX_SHAPES as MAX_SHAPES
from ._dispatch import adapter_for as adapter_for
from ._dispatch import is_source as is_source
from ._iterable import IterableAdapter as IterableAdapter
from ._prefetch import Prefetcher as Prefetcher
from ._prefetch import prefetch as prefetch
from ._sequence import Sequence as Sequence
from ._sequence import SequenceAdapter as SequenceAdapter
