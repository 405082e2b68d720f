"""The local backend: each platform's real serving runtime as a process on loopback."""
