"""Will label-free RL work on a model and its questions? Measured before training (``corewarding diagnose``):
:mod:`~corewarding.diagnosis.measurements` (what sampling shows), :mod:`~corewarding.diagnosis.probe`
(a short majority-vote run), :mod:`~corewarding.diagnosis.verdict` (the rules),
:mod:`~corewarding.diagnosis.diagnose` (the three together) and :mod:`~corewarding.diagnosis.report`
(the tables)."""
