"""Code that runs inside the runtimes' own environments (and images), never in the testbed's.

Modules here import only the standard library, numpy, joblib and the runtime's own package,
so each can be started with the runtime venv's python (or shipped as a RayService working_dir).
"""
