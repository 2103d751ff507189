"""Datasets: CIFAR-100 and ImageFolder readers, their transforms, and the downloader."""
from dropit.lab.data.datasets import build_datasets, ensure_dataset, resolve_data_dir
from dropit.lab.download import DatasetMissing

__all__ = ["DatasetMissing", "build_datasets", "ensure_dataset", "resolve_data_dir"]
