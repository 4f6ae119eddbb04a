# The two commands of the README. Each creates .venv and installs what it needs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BACKENDS ?= jax tensorflow torch
DEMO_BACKEND ?= torch
JOBS ?= 2

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]"
	# torch's CUDA build pulls triton, which nothing here uses on a CPU and whose native library crashes the
	# process when imported after jaxlib (torchvision imports it lazily): keep it out of the environment.
	$(PY) -m pip uninstall -y -q triton
	touch $@

demo: $(STAMP)
	KERAS_BACKEND=$(DEMO_BACKEND) KERAS_HYPER_OFFLINE=1 $(PY) -m keras_hyper.demo

# One pytest process per backend (the backend is fixed per process), two at a time: see scripts/test-backends.
test: $(STAMP)
	JOBS=$(JOBS) scripts/test-backends $(PY) $(BACKENDS)

clean:
	rm -rf $(VENV) build *.egg-info
