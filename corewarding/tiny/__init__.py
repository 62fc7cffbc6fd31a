"""The tiny model of the synthetic task: the model and tokenizer, pretraining, regimes, view diagnostics."""
