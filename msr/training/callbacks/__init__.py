"""Lightning callbacks of msr: checkpoints on interruption, evaluation files and figures, predictions.

Callbacks that derive from `EvaluationCallback` receive every evaluation's result from the module
(`on_evaluation_end`). Import from the submodules.
"""
