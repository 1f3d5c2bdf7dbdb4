"""Training GAP nets: `loop` (the training loop, DistributedDataParallel under torchrun) and `state` (the resumable
training state written atomically beside the checkpoint)."""
