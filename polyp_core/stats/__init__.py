"""Estimates and their uncertainty, shared by every task and the experiment: the spread over
training seeds (``seeds``) and the cluster bootstrap over patients/lesions (``uncertainty``).
Pure numpy/scipy: imports nothing else of the studio."""
