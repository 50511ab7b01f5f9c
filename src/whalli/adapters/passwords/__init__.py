"""Password screens: the bundled list of common passwords, Have I Been Pwned's range API, and
the chain that asks them in order."""
