"""A dataset decoded once and served from memory, for small data sets (the demo, the tests)."""

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from detops.ssd.transforms import IMAGENET_MEAN, IMAGENET_STD, hflip_boxes


class CachedDataset(Dataset):
    """Decodes a dataset once and serves it from memory, with cheap augmentation for training: horizontal
    flip and brightness/contrast jitter (fast enough that a 2-core CPU spends its time in the network).

    Args:
        dataset: gives ``(image [3, H, W] float in [0, 1], boxes [n, 4] fractional xyxy, labels, difficulties)``
            (a :class:`~detops.ssd.voc.VOCDataset` with ``transforms=None``).
        size (int): the side images are resized to (the model's ``input_size``).
        augment (bool): flip and jitter on every access (randomness from the global torch generator).
        mean, std: the normalisation applied when an item is served.
    """

    def __init__(self, dataset: Dataset, size: int, augment: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        # Stored as uint8 (2000 images at 160x160: 150 MB), normalised when served.
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
        self.items = []
        for i in range(len(dataset)):
            x, boxes, labels, diff = dataset[i]
            if x.shape[-2:] != (size, size):
                x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0]
            self.items.append(((x * 255).round().clamp(0, 255).to(torch.uint8), boxes, labels, diff))
        self.augment = augment
        self.classes = list(getattr(dataset, "classes", []))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        x, boxes, labels, diff = self.items[i]
        x = (x.float() / 255 - self.mean) / self.std
        if self.augment:
            if torch.rand(()) < 0.5:
                x, boxes = x.flip(-1), hflip_boxes(boxes)
            if torch.rand(()) < 0.5:
                x = x * (0.8 + 0.4 * torch.rand(())) + 0.4 * (torch.rand(()) - 0.5)
        return x, boxes, labels, diff
