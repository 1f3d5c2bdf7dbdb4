"""Datasets behind one small interface: a sample is an image, its id, a class index, GT boxes and an optional mask."""
