"""Real data in: import (``importer``), validation, label schemes (``labels``), splits
(``splits``), the manifest (``manifest``), the pixel cache (``cache``) and the demo
data set (``phantom``). Import from the submodules."""
