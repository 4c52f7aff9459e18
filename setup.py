"""Maps the project's top-level layer folders onto the `retrosearch` package namespace.

`plugin/`, `benchmarks/`, ... are where a reader looks for them; installed, they are
`retrosearch.plugin`, `retrosearch.benchmarks`, ... so nothing claims a generic top-level name.
"""

from pathlib import Path

from setuptools import find_packages, setup

LAYERS = ["core", "plugin", "local", "benchmarks", "ingest", "trainers"]

package_dir = {"retrosearch": "retrosearch"}
packages = ["retrosearch"] + [f"retrosearch.{p}" for p in find_packages("retrosearch")]
for layer in LAYERS:
    if not (Path(layer) / "__init__.py").is_file():
        continue  # a layer exists once its first real content lands
    package_dir[f"retrosearch.{layer}"] = layer
    packages += [f"retrosearch.{layer}"] + [f"retrosearch.{layer}.{p}" for p in find_packages(layer)]

setup(packages=packages, package_dir=package_dir)
