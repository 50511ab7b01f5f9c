"""Password hashing (argon2id) and access tokens (JWT), both pure computation, no I/O."""
