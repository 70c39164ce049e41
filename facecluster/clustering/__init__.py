"""The non-learned half of the method: reading data, preprocessing, kNN, edge probabilities, Jaccard, Infomap,
metrics, and the inference pipeline that ties them to the two networks. Importing it never imports Lightning."""
