# Two commands for students and CI; each sets up its own environment on a fresh machine.
#   make lab     create/update .venv, then open JupyterLab at the course's start page (lessons/start-en|bn.ipynb)
#   make test    create/update .venv, then run every test (pytest for mmcore + nbval for every notebook)
#   make setup   only the set-up of `make lab` (.venv with the course and the kernel "Python 3 (mmcore)"), no JupyterLab
#   make site    the course website (every lesson and solution with its committed outputs, both languages) into
#                build/site, with its own tools in .venv-site (Sphinx + MyST-NB; the course's .venv is not touched)
#   make wheelhouse  (on a machine with internet) every package the course needs, for the students' platform, into
#                wheelhouse/; copy it with the course folder: `make lab` then installs from it with no internet.
#                WHEEL_PLATFORM=win_amd64 WHEEL_PYTHON=3.11 for other machines (default: this one); PyTorch's CPU-only
#                wheels come from TORCH_INDEX (default https://download.pytorch.org/whl/cpu)
#   make check   the pre-flight check (under a minute; installs nothing): is this machine ready for the course?
#                COURSE_LANG=bn reports in Bengali; exit status 1 and a fix for each problem when something is not ready
#   make test-core   the course as Colab / plain pip users get it: a second venv with no test extras (sharing
#                    .venv's torch wheels), the real-weights path from a local server, every lesson and solution
# Options: COURSE_LANG=bn (open the Bengali lessons), PYTHON=python3.11 (the interpreter for the venv),
#          LAB_OPTS="--no-browser --port 8890" (more options for jupyter lab).

PYTHON ?= python3
VENV ?= .venv
COURSE_LANG ?= en
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmcore-installed
CORE_VENV ?= .venv-core
CORE_PY := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.mmcore-installed
SITE_VENV ?= .venv-site
WHEELHOUSE ?= wheelhouse
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
WHEEL_PLATFORM ?=
WHEEL_PYTHON ?=
# With a wheelhouse (make wheelhouse), `make lab` installs from it alone (no internet); else from PyPI as before.
WHEELHOUSE_STAMP := $(VENV)/.mmcore-wheelhouse-installed
LAB_STAMP := $(if $(wildcard $(WHEELHOUSE)/mmcore-*.whl),$(WHEELHOUSE_STAMP),$(STAMP))
SITE_STAMP := $(SITE_VENV)/.site-installed

.PHONY: setup lab test test-core check site wheelhouse bench lessons checkpoints clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mmcore)" >/dev/null
	@touch $(STAMP)

# The offline set-up: the course (editable, as above) and its dependencies from wheelhouse/ only (no test extras).
$(WHEELHOUSE_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-index --find-links $(WHEELHOUSE) -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mmcore)" >/dev/null
	@touch $(WHEELHOUSE_STAMP)

# The set-up `make lab` runs, alone: .devcontainer/ runs it when a Codespace or dev container is created.
setup: $(LAB_STAMP)

# JupyterLab serves the repository root (lessons, solutions, glossary, README all reachable) and opens the start page.
lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.default_url=/lab/tree/lessons/start-$(COURSE_LANG).ipynb $(LAB_OPTS)

test: $(STAMP)
	MMCORE_QUICK=1 $(PY) -m pytest

# The pre-flight check (mmcore/preflight.py) with the course's Python when .venv exists, else with $(PYTHON): it installs
# nothing, so that on an unprepared machine it says what is missing (and how to fix it) instead of installing it.
check:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m mmcore.preflight --lang $(COURSE_LANG)

# The website: site/build_site.py stages the committed notebooks, builds them with Sphinx + MyST-NB (never executed; warnings
# are errors) and checks every internal link of the result; it prints the size and the build time.
$(SITE_STAMP): site/requirements.txt
	@test -x $(SITE_VENV)/bin/python || $(PYTHON) -m venv $(SITE_VENV)
	$(SITE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r site/requirements.txt
	@touch $(SITE_STAMP)

site: $(SITE_STAMP)
	$(SITE_VENV)/bin/python site/build_site.py --out build/site

# Every package `make lab` needs, as wheels: the course's own, its dependencies from pyproject.toml (PyTorch's CPU-only
# wheels), ipykernel (the kernel) and setuptools (to install the course in editable mode). About 1 GB with CPU PyTorch.
wheelhouse:
	$(PYTHON) -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir $(WHEELHOUSE) .
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --dest $(WHEELHOUSE) --extra-index-url $(TORCH_INDEX) \
		$(if $(WHEEL_PLATFORM),--platform $(WHEEL_PLATFORM) --only-binary=:all:) \
		$(if $(WHEEL_PYTHON),--python-version $(WHEEL_PYTHON) --only-binary=:all:) \
		$$($(PYTHON) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))') \
		ipykernel "setuptools>=69"
	@du -sh $(WHEELHOUSE)

# A core-only install (pip install -e ., no extras), as the Colab set-up cell makes; torch & co. are shared with .venv.
$(CORE_STAMP): pyproject.toml $(STAMP)
	@test -x $(CORE_PY) || $(PYTHON) -m venv $(CORE_VENV)
	$(PY) tests/core_install/share_wheels.py $(CORE_VENV)
	$(CORE_PY) -m pip install --quiet --disable-pip-version-check -e .
	$(CORE_PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mmcore)" >/dev/null
	@touch $(CORE_STAMP)

test-core: $(CORE_STAMP)
	MMCORE_QUICK=1 $(CORE_PY) tests/core_install/check.py

# Speed and quality benchmarks: they print ratios against the reference measured in the same run.
bench: $(STAMP)
	@for f in tests/benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# Rebuild lessons/ and solutions/ from lessons/src (en + bn with identical code) and execute them (full run).
lessons: $(STAMP)
	$(PY) lessons/build.py --execute

# Retrain the shipped checkpoints (deterministic on the CPU with one thread, except the time-budgeted unCLIP run;
# about four hours on 2 cores: the sum of the training times in the cards; shapes-dalle's first run needs a CUDA GPU).
# The same command is recorded in each checkpoint's card (data/checkpoints/*.md, *.json).
checkpoints: $(STAMP)
	$(PY) -m mmcore.train clip --preset tiny --steps 1500 --batch-size 256 --lr 1e-3 --seed 0 --threads 1 \
		--templates base --no-save-optimizer --out data/checkpoints/shapes-tiny.safetensors
# the phrasing fine-tune: every training template, captions framed by everyday words, image tower locked (2 minutes)
	$(PY) -m mmcore.train clip --init-from shapes-tiny --freeze-image --templates all --frame-prob 0.3 --steps 800 \
		--batch-size 256 --lr 3e-4 --warmup-steps 50 --eval-every 100 --seed 1 --threads 2 --no-save-optimizer \
		--no-progress --out data/checkpoints/shapes-tiny.safetensors
# lesson 07's shapes-negclip: shapes-tiny fine-tuned with two-object pictures and hard negatives (NegCLIP; 33 minutes)
	$(PY) -m mmcore.train clip --init-from shapes-tiny --relation-prob 0.7 --hard-negatives --frame-prob 0.3 --steps 3000 \
		--batch-size 128 --lr 1e-3 --warmup-steps 30 --eval-every 500 --seed 7 --threads 1 --no-save-optimizer \
		--no-progress --out runs/shapes-negclip.safetensors
	cp runs/shapes-negclip.safetensors runs/shapes-negclip.json data/checkpoints/
# lesson 08's teacher shapes-english: shapes-tiny's recipe with English captions only (12 minutes)
	$(PY) -m mmcore.train clip --preset tiny --steps 1500 --batch-size 256 --lr 1e-3 --seed 0 --threads 2 --langs en \
		--templates base --no-save-optimizer --no-progress --out runs/shapes-english-base.safetensors
	$(PY) -m mmcore.train clip --init-from runs/shapes-english-base.safetensors --freeze-image --langs en --templates all \
		--frame-prob 0.3 --steps 800 --batch-size 256 --lr 3e-4 --warmup-steps 50 --eval-every 100 --seed 1 --threads 2 \
		--no-save-optimizer --no-progress --out runs/shapes-english.safetensors
	cp runs/shapes-english.safetensors runs/shapes-english.json data/checkpoints/
	$(PY) -m mmcore.train_judge --steps 2000 --threads 1 --out data/checkpoints/shapes-judge.safetensors
	$(PY) -m mmcore.train_vqgan --steps 1800 --batch-size 32 --lr 1e-3 --disc-weight 0.1 --disc-start 0.5 --seed 0 \
		--threads 1 --out data/checkpoints/shapes-vqgan.safetensors
	$(PY) -m mmcore.train_vqgan --steps 1800 --batch-size 32 --lr 1e-3 --disc-weight 0 --disc-start 0.5 --seed 0 \
		--threads 1 --out data/checkpoints/shapes-vqgan-nogan.safetensors
	$(PY) -m mmcore.train_unclip --max-minutes 40 --threads 2 --out data/checkpoints/shapes-unclip.safetensors
# ... continued after the phrasing fine-tune of shapes-tiny: the prior relearns the new text embeddings, the decoder
# trains 25 more minutes on a new pool (the image embeddings did not change)
	$(PY) -m mmcore.train_unclip --init-from data/checkpoints/shapes-unclip.safetensors --seed 1 --prior-steps 4000 \
		--decoder-lr 3e-4 --warmup-steps 50 --max-minutes 25 --threads 2 --no-progress --out runs/unclip-v2.safetensors
	cp runs/unclip-v2.safetensors data/checkpoints/shapes-unclip.safetensors
	cp runs/unclip-v2.json data/checkpoints/shapes-unclip.json
# shapes-dalle needs a CUDA GPU: 2.5 minutes on one H200 (one CPU thread would need about two days); see data/checkpoints/shapes-dalle.md
	$(PY) -m mmcore.train_dalle --device cuda --max-minutes 2.5 --final-eval-samples 0 --eval-every 1000 \
		--out data/checkpoints/shapes-dalle.safetensors --no-progress
# ... then its phrasing fine-tune on the 2-core CPU (50 + 30 minutes): all 20 caption templates per language and
# captions framed by everyday words, so that DALL-E's own text stream reads a student's phrasing
	$(PY) -m mmcore.train_dalle --init-from shapes-dalle --device cpu --threads 2 --max-minutes 50 --batch-size 64 \
		--lr 2e-4 --warmup-steps 100 --pool-size 100000 --framed-captions 20 --eval-every 500 --eval-images 512 \
		--final-eval-samples 0 --no-progress --out runs/dalle-phrasing.safetensors
	$(PY) -m mmcore.train_dalle --init-from runs/dalle-phrasing.safetensors --device cpu --threads 2 --max-minutes 30 \
		--batch-size 64 --lr 1e-4 --warmup-steps 50 --pool-size 100000 --framed-captions 20 --seed 1 --eval-every 500 \
		--eval-images 512 --final-eval-samples 0 --no-progress --out runs/dalle-phrasing2.safetensors
	cp runs/dalle-phrasing2.safetensors data/checkpoints/shapes-dalle.safetensors
	cp runs/dalle-phrasing2.json data/checkpoints/shapes-dalle.json

clean:
	rm -rf $(VENV) $(CORE_VENV) $(SITE_VENV) .pytest_cache .hypothesis
