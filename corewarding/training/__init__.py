"""Training: the config, the TRL trainer and its plug-ins (EMA teacher, token statistics), recipes, a run."""
