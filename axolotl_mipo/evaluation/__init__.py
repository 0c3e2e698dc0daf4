"""Evaluation: does the model use the user's context? Pointwise MI, context identification, text metrics, reports."""
