"""Datasets, batched two-view augmentation and loaders (docs/design.md section 1, ``data/``).

``data`` knows no network. Typical use::

    train = load_dataset(None, "train", image_size=32)           # digits, in memory
    views = make_views("mocov2_cifar", 32, train.mean, train.std)
    loader = make_loader(train, batch_size=256, seed=0)
    g = torch.Generator().manual_seed(0)
    for x, y in loader:
        v1, v2 = views(x, g)
"""

from slimssl.data.cache import cache_key, cached_folder_dataset
from slimssl.data.cifar import RestrictedUnpickler, cifar_variant, load_cifar
from slimssl.data.decode import IMAGE_EXTENSIONS, decode_image, to_rgb
from slimssl.data.digits import load_digits_splits
from slimssl.data.dispatch import load_dataset, load_split
from slimssl.data.errors import DataError, DataWarning
from slimssl.data.folder import (
    DEFAULT_STREAM_THRESHOLD,
    FolderIndex,
    StreamingImageFolder,
    load_image_folder,
    scan_folder,
)
from slimssl.data.loaders import (StreamingBatchLoader, TensorBatchLoader, make_loader,
                                  ordered_batches, prefetch_for_cap)
from slimssl.data.subset import balanced_subset
from slimssl.data.synthetic import make_synthetic
from slimssl.data.tensor_dataset import ImageTensorDataset, channel_mean_std
from slimssl.data.views import (
    RECIPES,
    BatchAugment,
    EvalTransform,
    TwoViewTransform,
    ViewSpec,
    eval_transform,
    make_views,
)

__all__ = [
    "DEFAULT_STREAM_THRESHOLD",
    "IMAGE_EXTENSIONS",
    "RECIPES",
    "BatchAugment",
    "DataError",
    "DataWarning",
    "EvalTransform",
    "FolderIndex",
    "ImageTensorDataset",
    "RestrictedUnpickler",
    "StreamingBatchLoader",
    "StreamingImageFolder",
    "TensorBatchLoader",
    "TwoViewTransform",
    "ViewSpec",
    "balanced_subset",
    "cache_key",
    "cached_folder_dataset",
    "channel_mean_std",
    "cifar_variant",
    "decode_image",
    "eval_transform",
    "load_cifar",
    "load_dataset",
    "load_split",
    "load_digits_splits",
    "load_image_folder",
    "make_loader",
    "make_synthetic",
    "make_views",
    "ordered_batches",
    "prefetch_for_cap",
    "scan_folder",
    "to_rgb",
]
