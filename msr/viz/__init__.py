"""Pictures of msr's evaluations: calibration plots and overlays of detections and ground truth, as plain
arrays and PNG files (no logger needed). Import from the submodules."""
