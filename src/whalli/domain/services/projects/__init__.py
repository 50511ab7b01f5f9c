"""Project and membership use cases, one module each; ``access`` holds the shared access rule."""
