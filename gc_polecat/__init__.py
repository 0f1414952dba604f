"""gc-polecat: same-session refinery feedback on a git-native bead store."""

__version__ = "0.1.0"
