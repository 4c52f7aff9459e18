"""What pyproject.toml asks pip to install, one requirement a line (scripts/env.sh, the Dockerfile).

    python3 scripts/requirements.py pyproject.toml          # the dependencies
    python3 scripts/requirements.py pyproject.toml --dev    # and the `dev` extra
    python3 scripts/requirements.py pyproject.toml --no-deps  # [tool.retrosearch] no-deps: pip install --no-deps
    python3 scripts/requirements.py pyproject.toml --extra gpu  # one extra only (the GPU image's faiss)
"""

import sys
import tomllib


def main(argv: list[str]) -> None:
    data = tomllib.load(open(argv[0], "rb"))
    project = data["project"]
    extras = project.get("optional-dependencies", {})
    if "--extra" in argv:
        wanted = extras[argv[argv.index("--extra") + 1]]
    elif "--no-deps" in argv:
        wanted = data.get("tool", {}).get("retrosearch", {}).get("no-deps", [])
    else:
        wanted = project["dependencies"] + (extras.get("dev", []) if "--dev" in argv else [])
    for req in wanted:
        print(req)


if __name__ == "__main__":
    main(sys.argv[1:])
