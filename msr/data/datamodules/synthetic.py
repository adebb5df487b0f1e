"""LightningDataModule over the embedded synthetic shapes set, generated on first use and cached."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from msr.data.datamodules.coco import CocoDataModule
from msr.data.synthetic import CATEGORY_NAMES, SyntheticCoco, generate_synthetic_coco, synthetic_params

#: The generator's defaults, taken from ``synthetic_params`` (their one place in Python).
GENERATOR_DEFAULTS: dict[str, Any] = {
    name: parameter.default for name, parameter in inspect.signature(synthetic_params).parameters.items()
}


class SyntheticDataModule(CocoDataModule):
    """``CocoDataModule`` over the embedded synthetic shapes set, generated on first use and cached.

    The generator arguments and their defaults are those of ``synthetic_params`` (its ``seed`` is
    ``data_seed`` here, ``seed`` being the loader's shuffle seed); ``cache_dir`` defaults to
    ``$MSR_CACHE_DIR`` or ``~/.cache/msr``. Other keyword arguments go to ``CocoDataModule`` (the test
    split is val).
    """

    def __init__(
        self,
        num_train: int = GENERATOR_DEFAULTS["num_train"],
        num_val: int = GENERATOR_DEFAULTS["num_val"],
        image_size: int | Sequence[int] = GENERATOR_DEFAULTS["image_size"],
        min_objects: int = GENERATOR_DEFAULTS["min_objects"],
        max_objects: int = GENERATOR_DEFAULTS["max_objects"],
        min_object_size: float = GENERATOR_DEFAULTS["min_object_size"],
        max_object_size: float = GENERATOR_DEFAULTS["max_object_size"],
        min_visible_fraction: float = GENERATOR_DEFAULTS["min_visible_fraction"],
        min_visible_area: int = GENERATOR_DEFAULTS["min_visible_area"],
        data_seed: int = GENERATOR_DEFAULTS["seed"],
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.synthetic_params = synthetic_params(
            num_train=num_train,
            num_val=num_val,
            image_size=image_size if isinstance(image_size, int) else list(image_size),
            min_objects=min_objects,
            max_objects=max_objects,
            min_object_size=min_object_size,
            max_object_size=max_object_size,
            min_visible_fraction=min_visible_fraction,
            min_visible_area=min_visible_area,
            seed=data_seed,
        )
        self.cache_dir = cache_dir
        self.paths: SyntheticCoco | None = None

    def prepare_data(self) -> None:
        """Generate the synthetic set into the cache unless it is already there (rank 0 of each node)."""
        self.resolve_paths()

    def resolve_paths(self) -> None:
        """Point the train/val paths at the cached synthetic set (generating it if needed).

        Called by ``prepare_data`` and ``setup``; until then ``train_ann``/``val_ann`` are None.
        """
        if self.paths is None:
            self.paths = generate_synthetic_coco(self.cache_dir, **self.synthetic_params)
            self.train_images, self.train_ann = str(self.paths.train_images), str(self.paths.train_ann)
            self.val_images, self.val_ann = str(self.paths.val_images), str(self.paths.val_ann)

    def categories(self) -> list[tuple[int, str]]:
        """Return the synthetic categories ``(i + 1, CATEGORY_NAMES[i])`` without generating anything."""
        if self._categories is None:
            self._categories = [(i + 1, name) for i, name in enumerate(CATEGORY_NAMES)]
        return self._categories
