"""Reading face embeddings and identity labels, with one-line errors for bad input; writing outputs all or nothing.

Formats (METHOD.md section 3):

* learn-to-cluster ``.bin``: raw little-endian float32, no header, ``N x d`` row-major (``d`` must be given).
* ``.npy`` and ``.npz`` (the array named ``features``/``feats``/``x``, or the only one).
* labels: ``.meta`` / ``.txt`` one integer per line, or ``.npy`` / ``.npz``.

Every problem raises :class:`~clustering.errors.InputError` whose message names the file and the problem on one
line; entry points print it and exit non-zero instead of showing a traceback. Hostile or broken input is refused
before any large read. One module per role, all re-exported here (``from facecluster.clustering.io import load_features``):

* :mod:`clustering.io.files`: the one check of every input path and every output path (**only regular files**
  are read or replaced), the model file's cheap checks, a file's SHA-256.
* :mod:`clustering.io.atomic`: :class:`AtomicFiles` / :func:`atomic_write`, outputs written all or nothing.
* :mod:`clustering.io.rows`: :class:`RowFile`, rows read on demand with ``pread`` (**no memory map**: a mapped
  file truncated while it is read kills the process with SIGBUS), and :func:`hash_rows`.
* :mod:`clustering.io.features`: :func:`load_features`; **formats are told by their content**, headers checked
  before the data is read, ``.npz`` members inflated chunk by chunk.
* :mod:`clustering.io.checks`: :func:`check_shape`, :func:`check_features` (**the row checks sample first**: a
  few rows spread over the whole file, then a chunked scan that stops at ``limit`` bad rows), :func:`check_k`,
  :func:`check_id_room`.
* :mod:`clustering.io.labels`: :func:`load_labels`, :func:`load_cluster_ids` (**parsed strictly**).
"""
from __future__ import annotations

from ..errors import InputError
from .atomic import AtomicFiles, atomic_write
from .checks import check_features, check_id_room, check_k, check_shape
from .features import load_features
from .files import check_input_file, check_model_file, check_output_path, file_sha256, name_limit
from .labels import load_cluster_ids, load_labels
from .rows import RowFile, hash_rows

__all__ = ["InputError", "RowFile", "load_features", "load_labels", "load_cluster_ids", "check_model_file",
           "check_input_file", "check_output_path", "check_shape", "check_features", "check_k", "check_id_room",
           "hash_rows", "file_sha256", "name_limit", "AtomicFiles", "atomic_write"]
