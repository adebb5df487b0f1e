"""COCO evaluation for msr: predictions → COCO results, COCOeval, MaskIoU calibration, metric keys, tables.

Pure PyTorch / pycocotools / faster-coco-eval: no Lightning or Hydra, so scripts and tests can use it
alone. Import from the submodules (`scoring.evaluate_results`, `evaluator.COCOEvaluator`, ...).
"""
