"""Task datasets: builders, augmentations, Arrow storage and the training stream."""
