"""Datasets: one module per format behind one small interface (image, class, boxes, optional mask)."""
