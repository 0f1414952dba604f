"""gc-polecat tests: real git, real processes, no mocks."""
