"""Data sources for fit/evaluate/predict behind one adapter interface."""

from ._adapter import Batch as Batch
from ._adapter import Chunk as Chunk
from ._adapter import DataAdapter as DataAdapter
from ._arrays import ArrayAdapter as ArrayAdapter
from ._prefetch import prefetch as prefetch
