"""Datasets by registry name: specs, uint8 tensors or Datasets, stratified splits, manifests.

See :mod:`vssl.data.registry` for the datasets, their on-disk layout and the split rules.
"""

from vssl.data.registry import (
    SPLITS,
    DatasetSpec,
    TensorImageDataset,
    build_dataset,
    dataset_labels,
    get_spec,
    imagenet100_classes,
    load_tensors,
    prepare,
    source_files,
    subset_indices,
)
from vssl.data.splits import SUBSET_SEED, DataError, stratified_split, stratified_subset

__all__ = [
    "SPLITS",
    "SUBSET_SEED",
    "DataError",
    "DatasetSpec",
    "TensorImageDataset",
    "build_dataset",
    "dataset_labels",
    "get_spec",
    "imagenet100_classes",
    "load_tensors",
    "prepare",
    "source_files",
    "stratified_split",
    "stratified_subset",
    "subset_indices",
]
