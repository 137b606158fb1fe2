"""The image data layer: real offline images, generated shapes, dataset readers and augmentations.

    images    checks and resampling of ``(N, C, H, W)`` float images in [0, 1]: resize, crop, grey
    datasets  ``ImageDataset`` (images, labels, class names), ``stratified_split``, seeded ``batches``
    bundled   scikit-learn's 8 x 8 digits (1,797) and its two sample photographs, offline
    shapes    dSprites-like images of shapes with known factors (shape, scale, rotation, x, y, hue)
    loaders   MNIST / Fashion-MNIST IDX files, CIFAR-10 python batches, class-per-folder PNG/JPEG images
    augment   batched, per-image random augmentations driven by a ``torch.Generator``

Names are imported on first use, so importing this package loads neither torch nor scikit-learn.
"""

from papers.core.lazy import lazy_exports

_MODULE_OF = {
    "images": ("as_size", "center_crop", "check_images", "resize", "resize_shorter_side", "to_grayscale"),
    "datasets": ("ImageDataset", "batches", "stratified_split"),
    "bundled": ("DIGIT_CLASSES", "SAMPLE_PHOTOS", "load_digits", "load_sample_photo"),
    "shapes": ("FACTOR_NAMES", "SHAPES", "ShapeFactors", "render_shapes", "sample_shapes", "shape_grid"),
    "loaders": (
        "CIFAR10_CLASSES", "DataFileError", "FASHION_MNIST_CLASSES", "IMAGE_SUFFIXES", "MNIST_CLASSES",
        "load_cifar10", "load_cifar10_batch", "load_fashion_mnist", "load_image_folder", "load_mnist",
        "read_idx", "write_idx",
    ),
    "augment": (
        "ColorJitter", "Compose", "Cutout", "GaussianBlur", "GaussianNoise", "Normalize", "RandomApply",
        "RandomCrop", "RandomGrayscale", "RandomHorizontalFlip", "RandomResizedCrop", "RandomRotation",
        "hflip", "rotate",
    ),
}  # fmt: skip

__getattr__, __all__ = lazy_exports(
    __name__, {name: module for module, names in _MODULE_OF.items() for name in names}
)
