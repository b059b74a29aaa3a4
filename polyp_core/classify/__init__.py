"""The classifier: its model (``model``), training (``train``), linear probe (``probe``) and
metrics (``metrics``). The classification task of an experiment is ``polyp_core.tasks.classify``."""
