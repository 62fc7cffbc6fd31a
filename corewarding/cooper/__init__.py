"""Cooper: a reference-based reward model, its labelled data, its supervised training, its co-training."""
