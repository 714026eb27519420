"""nerfstudio glue: the split model, the trainer, the pipelines (victim training, attack evaluation) and the
method configurations registered in ``method_configs/``."""
