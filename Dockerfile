# syntax=docker/dockerfile:1
# The llmrec image for every Ray pod of k8s/ (head, workers, RayJob submitters): the project and
# exactly its runtime extras, Ray included, running as user ray (uid 1000) like the Ray images.
#
#   CPU: docker build -t registry.example.com/llmrec:0.1.0-cpu .
#   GPU: docker build -t registry.example.com/llmrec:0.1.0-gpu \
#          --build-arg VARIANT=gpu --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 .
#
# VARIANT=cpu: torch 2.13.0 pinned and installed first (an unpinned torch pulls a multi-GB CUDA build),
#   then '.[cpu,serve,train,gguf,postgres]' (faiss-cpu). Where torch==2.13.0 still resolves to a CUDA build,
#   pass --build-arg TORCH_INDEX_URL=<the PyTorch CPU wheel index>, or TORCH_FIND_LINKS=<a URL or folder
#   listing the CPU wheel> (scripts/image.sh serves this machine's wheel that way).
# VARIANT=gpu: '.[gpu,serve,train,gguf]' (faiss-gpu, vllm; vllm pins its own CUDA torch) on a CUDA
#   base image whose CUDA major version your nodes' driver supports.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
ARG TORCH_FIND_LINKS=""
# A CA bundle for pip behind a TLS-inspecting proxy, e.g. mounted into the build (scripts/image.sh does).
ARG PIP_CERT=""

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/llmrec \
    PATH=/opt/llmrec/bin:$PATH \
    LLMREC_HOME=/home/ray/.cache/llmrec

# wget: KubeRay's default probes; python3 + venv only where the base has no Python (CUDA images);
# user ray takes uid 1000 (Ubuntu images give it to a user "ubuntu").
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget ca-certificates \
 && if ! command -v python3 >/dev/null; then apt-get install -y --no-install-recommends python3 python3-venv; fi \
 && rm -rf /var/lib/apt/lists/* \
 && if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
 && useradd --create-home --uid 1000 --shell /bin/bash ray \
 && python3 -m venv "$VIRTUAL_ENV" \
 && chown -R ray "$VIRTUAL_ENV"

USER ray
WORKDIR /home/ray
RUN pip install ${PIP_CERT:+--cert "$PIP_CERT"} --upgrade pip \
 && if [ "$VARIANT" = "cpu" ]; then \
      pip install ${PIP_CERT:+--cert "$PIP_CERT"} ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} ${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"} "torch==${TORCH_VERSION}"; \
    fi

# The project last: code changes rebuild only this layer.
COPY --chown=ray pyproject.toml README.md /home/ray/src/
COPY --chown=ray llmrec /home/ray/src/llmrec
COPY --chown=ray deployments /home/ray/src/deployments
COPY --chown=ray train /home/ray/src/train
COPY --chown=ray llmrec_cli /home/ray/src/llmrec_cli
RUN case "$VARIANT" in \
      cpu) extras="cpu,serve,train,gguf,postgres" ;; \
      gpu) extras="gpu,serve,train,gguf,postgres" ;; \
      *) echo "VARIANT must be cpu or gpu, not $VARIANT" >&2; exit 1 ;; \
    esac \
 && pip install ${PIP_CERT:+--cert "$PIP_CERT"} "/home/ray/src[${extras}]" \
 && rm -rf /home/ray/src \
 && python -c "import llmrec, llmrec_cli.main, deployments.app, train.cli, ray; assert ray.__version__ == '2.60.0', ray.__version__"

CMD ["/bin/bash"]
