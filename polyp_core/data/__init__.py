"""Real data in: import, validation, label schemes, splits, the demo (phantom) data set."""

from polyp_core.data.importer import ImportConfig, ImportResult, import_dataset
from polyp_core.data.labels import SCHEMES, LabelScheme, get_scheme
from polyp_core.data.manifest import Manifest, ManifestItem

__all__ = ["ImportConfig", "ImportResult", "import_dataset", "SCHEMES", "LabelScheme",
           "get_scheme", "Manifest", "ManifestItem"]
