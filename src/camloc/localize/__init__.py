"""Localization and faithfulness evaluation of maps: metrics, box generators and the evaluation driver.
Faithfulness (deletion / insertion, confidence drop, ROAD, pointing game): `camloc.localize.faithfulness`."""
