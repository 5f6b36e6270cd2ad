#!/usr/bin/env bash
# Regenerate src/taureau/protocol/pulsar_api_pb2.py (and its type stub) from our PulsarApi.proto.
#
# The generated module is committed. protoc stamps the gencode with its own protobuf version and
# the runtime refuses gencode newer than itself, so we lower the stamp to the oldest runtime the
# project supports (pyproject: protobuf>=6.33). The Python gencode is only a serialized
# descriptor plus builder calls, identical in shape across 6.x and 7.x, so the stamp is the only
# thing that ties it to a version; tests/protocol checks the module loads and round-trips.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-/work/venv/bin/python}"
MIN_MAJOR=6
MIN_MINOR=33
MIN_PATCH=0
OUT=src/taureau/protocol
"$PY" -m grpc_tools.protoc -I"$OUT" --python_out="$OUT" --pyi_out="$OUT" "$OUT/PulsarApi.proto"
mv "$OUT/PulsarApi_pb2.py" "$OUT/pulsar_api_pb2.py"
# The stub types the codec for mypy. Two values of Schema.Type are dropped from it: None (a
# syntax error there) and KeyValue (it shadows the KeyValue message in Schema's own fields).
grep -vE '^ +(None|KeyValue): (_ClassVar\[)?Schema\.Type' "$OUT/PulsarApi_pb2.pyi" >"$OUT/pulsar_api_pb2.pyi"
rm "$OUT/PulsarApi_pb2.pyi"
"$PY" - "$OUT/pulsar_api_pb2.py" "$MIN_MAJOR" "$MIN_MINOR" "$MIN_PATCH" <<'PYEOF'
import re
import sys

path, major, minor, patch = sys.argv[1], *sys.argv[2:]
text = open(path).read()
text, n = re.subn(
    r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*)\d+,\s*\d+,\s*\d+,",
    rf"\g<1>{major},\n    {minor},\n    {patch},",
    text,
)
if n != 1:
    sys.exit("gen_proto.sh: version check line not found in gencode")
text = re.sub(r"# Protobuf Python Version: .*", f"# Protobuf Python Version: {major}.{minor}.{patch} (stamp lowered by scripts/gen_proto.sh)", text)
open(path, "w").write(text)
PYEOF
echo "wrote $OUT/pulsar_api_pb2.py"
