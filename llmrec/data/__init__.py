"""Data: catalogs, items, the durable store, text rendering, splits, packaged assets and data set loaders."""
