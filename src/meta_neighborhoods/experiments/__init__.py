"""The paper's experiments as functions the command line calls; each writes its configuration beside its metrics."""
