# memgraph-operator tasks. Every recipe is a plain cargo command, shown in the README for
# machines without `just`.

# List the recipes.
default:
    @just --list

# The simulation: a seeded fault-injection sweep (pass arguments, e.g. `just sim --seed 7 --timeline`).
sim *args:
    cargo run --release -p sim -- {{args}}

# Run every test of the workspace (what CI runs after fmt and clippy).
test:
    cargo test --workspace --locked

# The end-to-end suites (e2e/): real Memgraph through testcontainers (needs a docker daemon;
# pulls memgraph/memgraph images) and the operator on a kind cluster (needs docker, kind,
# kubectl, helm). What is missing makes the tests report as ignored with the reason;
# MGO_E2E_REQUIRE=1 fails them instead, MGO_E2E_KEEP=1 keeps the kind cluster. Pass test
# arguments, e.g. `just e2e --exact scenario::roles::v3_12` or `just e2e --list`.
e2e *args:
    cargo test -p e2e --locked -- {{args}}

# Format check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Regenerate the checked-in CRD from the Rust types (deploy/crds/memgraphcluster.yaml links to
# the chart's copy, deploy/helm/memgraph-operator/files/memgraphcluster-crd.yaml), then the
# install manifest that contains it.
crd:
    cargo run -q -p memgraph-operator -- crd > deploy/helm/memgraph-operator/files/memgraphcluster-crd.yaml
    deploy/gen-install.sh

# Regenerate deploy/install.yaml from the Helm chart's default values (needs helm).
install-manifest:
    deploy/gen-install.sh

# Print every object the operator would create for a MemgraphCluster file.
render file="deploy/samples/minimal.yaml":
    cargo run -q -p memgraph-operator -- render -f {{file}}

# Everything CI does.
ci:
    .ci/run
