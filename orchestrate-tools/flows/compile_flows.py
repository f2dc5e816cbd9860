"""Compile the flows in this folder to the JSON `orchestrate tools import -k flow` takes.

    python orchestrate-tools/flows/compile_flows.py           # (re)write the *.json
    python orchestrate-tools/flows/compile_flows.py --check   # exit 1 when a *.json is stale

The ADK's flow builder opens a WXO client when a flow is created, though nothing here calls
it: the script points HOME at a throwaway folder holding a placeholder local environment, so
no real WXO configuration or credential is read or needed.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = ("edit_image_in_chat", "edit_image_to_cos", "edit_folder", "scheduled_folder_trigger")


def _placeholder_home(home: Path) -> None:
    """A local environment with a dummy far-future token: the client is never used."""
    import jwt  # PyJWT, an ADK dependency; the ADK only reads the token's expiry

    token = jwt.encode({"exp": 4102444800, "sub": "placeholder"},
                       "placeholder-signing-key-not-a-secret-at-all", algorithm="HS256")
    (home / ".config/orchestrate").mkdir(parents=True)
    (home / ".cache/orchestrate").mkdir(parents=True)
    (home / ".config/orchestrate/config.yaml").write_text(
        "context:\n  active_environment: local\n"
        "environments:\n  local:\n    wxo_url: http://localhost:4321\n")
    (home / ".cache/orchestrate/credentials.yaml").write_text(
        f"auth:\n  local:\n    wxo_mcsp_token: {token}\n")


def compile_flows() -> dict[str, str]:
    """{file name: JSON text} for every flow; call before anything imports the ADK."""
    from ibm_watsonx_orchestrate.flow_builder.flows.decorators import FlowWrapper

    sys.path.insert(0, str(HERE))
    out = {}
    for name in FLOWS:
        module = importlib.import_module(name)
        (wrapper,) = [v for v in vars(module).values() if isinstance(v, FlowWrapper)]
        model = wrapper().to_json()
        model.setdefault("metadata", {})["source_kind"] = "adk/python"
        out[f"{name}.json"] = json.dumps(model, indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        _placeholder_home(Path(home))
        os.environ["HOME"] = home  # the ADK reads its config paths from HOME at import
        os.environ.setdefault("PYTEST_CURRENT_TEST", "compile_flows")  # errors raise, not exit
        files = compile_flows()
    stale = [n for n, text in files.items()
             if not (HERE / n).exists() or (HERE / n).read_text(encoding="utf-8") != text]
    if args.check:
        for name in stale:
            print(f"{name} is stale: run python orchestrate-tools/flows/compile_flows.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for name, text in files.items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(HERE / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
