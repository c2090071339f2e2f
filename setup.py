"""The C part of dbcrate: the row counter's chunk walk (engines/postgres/_chunkwalk.c).

Everything else is in pyproject.toml. The extension is optional: where it does not build
(no compiler, no Python headers) the install goes on without it and the row counter uses
its Python walk (engines/postgres/archive.py). Built against the limited API, so one
binary (``_chunkwalk.abi3.so``) serves every CPython >= 3.11.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dbcrate.engines.postgres._chunkwalk",
            ["src/dbcrate/engines/postgres/_chunkwalk.c"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            py_limited_api=True,
            optional=True,
        ),
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
