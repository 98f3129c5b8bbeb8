"""Data sources for fit/evaluate/predict behind one adapter interface.

What `x` (and `validation_data`) may be, as `adapter_for` recognises it:

- numpy/jax arrays and pytrees of them (dicts, lists, tuples), with `y` and
  `sample_weight`: cut into batches of `batch_size`, shuffled per epoch from the model's
  seed and the epoch;
- a generator, an iterator, or any iterable of batches (grain `MapDataset`,
  `IterDataset` and `DataLoader`, a PyTorch `DataLoader`, a tf.data dataset, your own
  class with `__iter__`), each batch `x`, `(x, y)` or `(x, y, sample_weight)` with
  pytrees anywhere (a list counts as a tuple there, as torch's collate makes them);
- a `Sequence` (or any object with `__len__` and `__getitem__` and no `__iter__`) whose
  items are batches, read by `workers` threads.

Epochs. Arrays and `Sequence`s are indexed: each epoch reads them from the start (in
a shuffled order when `shuffle`), at most `steps_per_epoch` batches. A re-iterable
source (one whose `iter()` starts a new pass: a grain dataset, a DataLoader) gives one
full pass per epoch; with `steps_per_epoch`, each epoch is the next that many batches of
a continuing stream that starts a new pass whenever one ends, as in Keras. A generator
or other one-pass iterator cannot be restarted and may be infinite, so `fit` needs
`steps_per_epoch` for it (and `validation_steps` for one as validation data); it is then
read as one continuing stream, and when it runs out `fit` stops with a warning, as
Keras does. A source that reports an infinite length (grain's `repeat()`) needs the
steps too. `evaluate` and `predict` read a generator to its end unless `steps` is given;
`predict` concatenates the predictions of all batches.

Prefetch. Sources whose batches cost host work (all but arrays) are read by one
background thread, `prefetch_size` chunks ahead (default 2; build the adapter yourself,
e.g. `IterableAdapter(gen, steps=100, prefetch_size=8)`, to change it, 0 to turn it
off), so that host time overlaps the compiled step. Arrays are read synchronously on
CPU, where slicing costs less than a thread hop; on an accelerator every source is read
ahead and `device_put` by the thread. The thread ends with the loop, whether it finishes,
stops early, raises or is interrupted, and an exception raised by your source reaches
you with its own traceback.

Batch shapes. Batches are not padded: the step compiles once per distinct batch shape
(and dtype), and a source that produces more than `MAX_SHAPES` distinct shapes gets a
warning. Arrays give at most two (the full batches and the last one; `drop_remaining`
leaves one); give other sources fixed-size batches, or pad them, to avoid recompiles.
"""

from ._adapter import Batch as Batch
from ._adapter import Chunk as Chunk
from ._adapter import DataAdapter as DataAdapter
from ._arrays import ArrayAdapter as ArrayAdapter
from ._checks import MAX_SHAPES as MAX_SHAPES
from ._dispatch import adapter_for as adapter_for
from ._dispatch import is_source as is_source
from ._epoch import epoch_chunks as epoch_chunks
from ._iterable import IterableAdapter as IterableAdapter
from ._prefetch import Prefetcher as Prefetcher
from ._prefetch import prefetch as prefetch
from ._sequence import Sequence as Sequence
from ._sequence import SequenceAdapter as SequenceAdapter
