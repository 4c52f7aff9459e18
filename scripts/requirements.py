"""What pyproject.toml asks pip to install, one requirement a line (scripts/env.sh, the Dockerfile).

    python3 scripts/requirements.py pyproject.toml          # the dependencies
    python3 scripts/requirements.py pyproject.toml --dev    # and the `dev` extra
    python3 scripts/requirements.py pyproject.toml --no-deps  # [tool.retrosearch] no-deps: pip install --no-deps
"""

import sys
import tomllib


def main(argv: list[str]) -> None:
    data = tomllib.load(open(argv[0], "rb"))
    project = data["project"]
    if "--no-deps" in argv:
        wanted = data.get("tool", {}).get("retrosearch", {}).get("no-deps", [])
    else:
        wanted = project["dependencies"] + (project.get("optional-dependencies", {}).get("dev", []) if "--dev" in argv else [])
    for req in wanted:
        print(req)


if __name__ == "__main__":
    main(sys.argv[1:])
