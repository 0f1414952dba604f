"""The refinery: the merge queue that judges submissions, and the code repository's git hooks."""
