"""msr data: COCO data sets (pycocotools), the embedded synthetic set, transforms, samplers,
LightningDataModules (`msr.data.datamodules`) and converters to COCO. Import from the submodules."""
