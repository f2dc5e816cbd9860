"""Per-folder manifests (`imagedrop.yaml`): the schema, parsing, and nearest-ancestor lookup.

`schema`, `parse`, `naming` and `problems` perform no I/O; `resolve` reads through an ObjectStore.
"""

from imagedrop.manifests.naming import PLACEHOLDERS
from imagedrop.manifests.parse import MAX_MANIFEST_BYTES, parse_manifest
from imagedrop.manifests.problems import ManifestError, ManifestProblem
from imagedrop.manifests.resolve import ManifestResolver, Resolved, folders_above
from imagedrop.manifests.schema import (
    DEFAULT_INCLUDE,
    EVENT_TYPES,
    MANIFEST_NAMES,
    Manifest,
    Output,
    Subscriber,
)

__all__ = [
    "DEFAULT_INCLUDE", "EVENT_TYPES", "MANIFEST_NAMES", "MAX_MANIFEST_BYTES", "PLACEHOLDERS",
    "Manifest", "ManifestError", "ManifestProblem", "ManifestResolver", "Output", "Resolved",
    "Subscriber", "folders_above", "parse_manifest",
]
