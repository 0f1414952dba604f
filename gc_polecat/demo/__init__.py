"""`gc-polecat demo`: a temporary city, the scripted polecat that stands in for the LLM agent,
and the leak audit."""
