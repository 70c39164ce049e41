"""facecluster: face clustering with a learned Top-K neighbour predictor, Top-K Jaccard edges, a Sparse
Differential Transformer and Infomap (see the README).

Subpackages, lowest layer first: :mod:`facecluster.models` (plain ``nn.Module`` networks), :mod:`facecluster.clustering`
(kNN, edges, Infomap, metrics, the inference pipeline, the photo front end), :mod:`facecluster.datamodules`,
:mod:`facecluster.lightning_modules` and :mod:`facecluster.callbacks` (training), :mod:`facecluster.commands` (the
``facecluster`` console script). Importing this package imports nothing heavy.
"""
__version__ = "0.1.0"
