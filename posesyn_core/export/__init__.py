"""Export a run's synthetic set for the trainers people already use: WebDataset tar shards or a COCO-style layout
with 3D fields (`posesyn export RUN.yaml --format webdataset|coco3d --out URL`)."""
