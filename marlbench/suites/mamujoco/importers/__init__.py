"""The formats in which the papers published MaMuJoCo datasets, by format name.

Each module documents its layout and conventions (REFERENCE.md, "Datasets in the wild");
:func:`marlbench.data.importers.import_dataset` runs them against the task's ``paper`` spec.
"""

from __future__ import annotations

from marlbench.data.importers.base import Importer
from marlbench.suites.mamujoco.importers.comadice_npz import ComaDiceNpzImporter
from marlbench.suites.mamujoco.importers.omar_npy import OmarNpyImporter
from marlbench.suites.mamujoco.importers.omiga_hdf5 import OmigaHdf5Importer

IMPORTERS: dict[str, Importer] = {
    importer.name: importer for importer in (OmigaHdf5Importer(), ComaDiceNpzImporter(), OmarNpyImporter())
}
