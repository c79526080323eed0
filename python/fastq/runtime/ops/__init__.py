"""Operator implementations. Importing this package registers every op module."""
