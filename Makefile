# The two commands of the README:
#   make run    build everything and run the whole stack locally with a demo (Ctrl-C stops it)
#   make test   install what is missing, build, lint, and run every test (end-to-end included)
#
# CARGO_TARGET_DIR may point outside the clone (CI does) so builds are reused.

CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
WASM_PROFILE := wasm-release

.PHONY: run test setup build wasm lint fmt clean fuzz images

run: build
	$(CARGO) run -q -p authz-e2e --bin devstack -- $(ARGS)

test: build lint images
	./scripts/test.sh
	./scripts/fuzz.sh 10

setup:
	./scripts/setup.sh

# Both container images (Docker, else buildah on an mmdebstrap base); `make test` smoke-tests them.
images: setup
	./scripts/images.sh

wasm: setup
	$(CARGO) build -p authz-filter --target $(WASM_TARGET) --profile $(WASM_PROFILE)

build: setup wasm
	$(CARGO) build --workspace --bins

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p authz-filter --target $(WASM_TARGET) -- -D warnings

fmt:
	$(CARGO) fmt --all

# Longer fuzzing: make fuzz SECS=600
fuzz: setup
	./scripts/fuzz.sh $(or $(SECS),600)

clean:
	$(CARGO) clean
