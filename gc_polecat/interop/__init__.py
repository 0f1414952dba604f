"""bd and Gas City interop: bd JSONL, bd's verbs and event hooks, Gas City's exec provider."""
