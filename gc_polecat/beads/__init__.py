"""The beads repository: bead records, IDs, the git store and its catalog, settings, sync.

The lowest domain layer: it knows nothing of sessions, pools or the refinery."""
