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

# Format check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Regenerate the checked-in CRD from the Rust types.
crd:
    cargo run -q -p memgraph-operator -- crd > deploy/crds/memgraphcluster.yaml

# Print every object the operator would create for a MemgraphCluster file.
render file="deploy/samples/minimal.yaml":
    cargo run -q -p memgraph-operator -- render -f {{file}}

# Everything CI does.
ci:
    .ci/run
