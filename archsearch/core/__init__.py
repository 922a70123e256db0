"""What one training run needs: configs, data, the model builder and the trainer. Imports nothing of the search."""
