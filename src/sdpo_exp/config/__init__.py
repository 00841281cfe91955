"""Configuration: schemas, registration with Hydra, one-line validation errors, help."""
