# speechrq: the two set-up commands of the README are `make demo` and `make test`.
# Torch is installed first, pinned to the CPU wheel this machine provides, so that
# nothing later pulls another torch build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
DEMO   ?= exp/demo
DEMO_TASKS ?= pr,er
# runs one demo phase and appends its time to $(DEMO)/phases.tsv under this make's start; --summary prints them
DEMO_RUN := $(shell date +%Y%m%d-%H%M%S)
PHASE = $(BIN)/python -m speechrq.phases $(DEMO)/phases.tsv --run $(DEMO_RUN)
# The shipped reference: the tiny encoder after 4000 BEST-RQ steps on the demo corpus (`make reference`)
REFERENCE := assets/reference/tiny_bestrq/checkpoints/step_00004000

.PHONY: install test test-slow test-all docs demo reference rpq-tables ml-tables ml-probes ml-asr narrow-table latent-study real-speech bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q 'setuptools>=77' wheel  # the build backend, also for tests/test_wheel.py's offline wheel build
	$(BIN)/python -m pip install -q -e '.[test,docs]'
	touch $@

# one pytest worker per core, at most 4 (pytest-xdist); worksteal: an idle worker takes queued tests from a busy one.
# `make test` is every test but those marked slow (pyproject.toml: whole studies, two-process runs, torch.compile, the
# wheel's build, killed and resumed commands; 15 s or more each); `make test-slow` runs those; CI (.ci/run) runs both;
# `make test-all` runs everything in one go
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal
test: $(STAMP)
	$(PYTEST) -m "not slow" tests

test-slow: $(STAMP)
	$(PYTEST) -m slow tests

test-all: $(STAMP)
	$(PYTEST) tests

# The documentation site (mkdocs.yml): the results pages and their figures rendered from the JSON in docs/, the README's
# claims table and prose numbers refreshed from the same JSON, the command-line and config references from the parser and
# the config dataclasses, then site/, strict (a warning, a broken link or anchor,
# or an unknown {{ number }} in a page fails the build). Not --quiet: it drops the warnings before strict can count them.
docs: $(STAMP)
	$(BIN)/python -m speechrq.studies.results_pages docs --readme README.md
	$(BIN)/python -m speechrq.cli.reference docs/reference/cli.md
	$(BIN)/python -m speechrq.config_reference docs/reference/config.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The main job on the embedded corpus: BEST-RQ pre-training and a Latent-RQ stage branched at half of it (seed 0 of
# the study in docs/latent_study.md), PR and ER probes against the filterbank, Figure 3's curves, discrete-unit ASR
# (k-means against RPQ at the paper's M = 32, α = 0.125 on the 320-dimensional log-Mel: training seed 0 of
# docs/rpq_tables_mel.md), and the report of every claim of both papers
# (exp/demo/report.md), then each phase's time. Every step reuses what an earlier run finished.
# The curves read the last checkpoints' seed-0 probes from the probe table's folder (--reuse-probes), not train them again.
# DEMO_TASKS=pr,ft,sid,ic,er adds fine-tuning, SID and IC (SID saturates and IC sits near its floor on this corpus).
demo: $(STAMP)
	@$(PHASE) "corpus" $(BIN)/speechrq synth $(DEMO)/corpus --hours 1.0 --seed 0
	@$(PHASE) "feature statistics" $(BIN)/speechrq features stats $(DEMO)/corpus
	@$(BIN)/speechrq data summary $(DEMO)/corpus
	@$(PHASE) "BEST-RQ stage 0, 1000 steps" $(BIN)/speechrq pretrain configs/pretrain/tiny.yaml --resume \
	    --set data.corpus=$(DEMO)/corpus --set out_dir=$(DEMO)/stage0
	@$(PHASE) "Latent-RQ stage 1, steps 500 to 1000" $(BIN)/speechrq pretrain configs/pretrain/tiny_latent.yaml --resume \
	    --init-from $(DEMO)/stage0/checkpoints/step_00000500 \
	    --set data.corpus=$(DEMO)/corpus --set out_dir=$(DEMO)/stage1
	@$(PHASE) "probes (3 seeds)" $(BIN)/speechrq evaluate $(DEMO)/stage0 $(DEMO)/stage1 --fbank-baseline \
	    --corpus $(DEMO)/corpus --tasks $(DEMO_TASKS) --probe-seeds 3 --out $(DEMO)/eval
	@$(PHASE) "Figure 3 curves" $(BIN)/speechrq evaluate $(DEMO)/stage0 $(DEMO)/stage1 --every 250 --corpus $(DEMO)/corpus \
	    --tasks pr --probe-seeds 1 --no-target-analysis --reuse-probes $(DEMO)/eval --out $(DEMO)/curves
	@$(PHASE) "discrete-unit ASR" $(BIN)/speechrq asr compare configs/asr/tiny.yaml --encoder $(DEMO)/corpus/feature_stats.json \
	    --layer -1 --corpus $(DEMO)/corpus --out $(DEMO)/asr --k 500 --pq "" --rpq 32 --alpha 0.125 --no-continuous \
	    --set optim.max_steps=600 --jobs 2
	@$(PHASE) "report" $(BIN)/speechrq report $(DEMO)
	@$(PHASE) --summary --json $(DEMO)/phases.json

# How $(REFERENCE) was made (33 minutes on 2 cores): the demo corpus, the tiny recipe for 4000 steps with
# the 8 x 4096 heads it had then (the default is now 4 x 1024), exported without the prediction heads and
# the optimizer state, with its training log.
reference: $(STAMP)
	$(BIN)/speechrq synth $(DEMO)/corpus --hours 1.0 --seed 0
	$(BIN)/speechrq features stats $(DEMO)/corpus
	$(BIN)/speechrq pretrain configs/pretrain/tiny.yaml --resume --set data.corpus=$(DEMO)/corpus \
	    --set quantizer.num_codebooks=8 --set quantizer.codebook_size=4096 \
	    --set out_dir=exp/ref4000 --set optim.max_steps=4000 --set train.checkpoint_every=500 --set train.keep_last=20
	$(BIN)/speechrq export exp/ref4000/checkpoints/step_00004000 $(REFERENCE)
	gzip -9 -n < exp/ref4000/metrics.jsonl > $(dir $(patsubst %/,%,$(dir $(REFERENCE))))metrics.jsonl.gz

# The RPQ paper's Tables I-IV, VII and Figure 6 on the stacked log-Mel (320 dimensions), 3 training seeds, 600 ASR steps
# (docs/rpq_tables_mel.*; about 2 hours on 2 cores, resumable: a rerun trains only what is missing)
MEL_COMPARE = $(BIN)/speechrq asr compare configs/asr/tiny.yaml --encoder $(DEMO)/corpus/feature_stats.json --layer -1 \
    --corpus $(DEMO)/corpus --seeds 0,1,2 --jobs 2 --set optim.max_steps=600
rpq-tables: $(STAMP)
	$(BIN)/speechrq synth $(DEMO)/corpus --hours 1.0 --seed 0
	$(BIN)/speechrq features stats $(DEMO)/corpus
	$(MEL_COMPARE) --out exp/mel_k500 --k 500 --kmeans-inputs units,bpe --pq 2,4,8,16,32 \
	    --rpq 2,4,8,16,32,32@0.0625,32@0.25,32@0.5 --rvq 2,8
	$(MEL_COMPARE) --out exp/mel_k1000 --k 1000 --no-continuous --pq "" --rpq ""
	$(MEL_COMPARE) --out exp/mel_k2000 --k 2000 --no-continuous --pq "" --rpq ""
	$(BIN)/speechrq asr tables exp/mel_k500 exp/mel_k1000 exp/mel_k2000 --prefix docs/rpq_tables_mel \
	    --logs docs/rpq_tables_mel_logs

# Beyond English (docs/ml_*; about 1.5 hours on 2 cores, resumable): a six-language corpus; BEST-RQ pre-trained on
# it for 1000 steps (2 pre-training seeds) against the English reference (4000 steps), a random init and the
# filterbank on PR and LID per language (3 probe seeds); the RPQ paper's multilingual column (k-means, PQ M = 16,
# RPQ M = 32 and continuous; BPE 2000 output; 3 training seeds)
ML := exp/ml
ML_COMPARE = $(BIN)/speechrq asr compare configs/asr/tiny.yaml --layer -1 --k 500 --alpha 0.125 --seeds 0,1,2 --jobs 2 \
    --set optim.max_steps=600
ml-tables: ml-probes ml-asr

$(ML)/corpus/feature_stats.json: $(STAMP)
	$(BIN)/speechrq synth $(ML)/corpus --languages en,fr,de,es,ru,cmn --hours 3 --speakers 48 --seed 0
	$(BIN)/speechrq features stats $(ML)/corpus

# the probes: BEST-RQ pre-trained on the six languages against the reference, a random init and the filterbank
ml-probes: $(ML)/corpus/feature_stats.json
	for s in 0 1; do $(BIN)/speechrq pretrain configs/pretrain/tiny.yaml --resume --set data.corpus=$(ML)/corpus \
	    --set out_dir=$(ML)/bestrq_seed$$s --set train.seed=$$s --set quantizer.seed=$$((1234 + s)) || exit 1; done
	$(BIN)/speechrq evaluate $(REFERENCE) $(ML)/bestrq_seed0 $(ML)/bestrq_seed1 --fbank-baseline \
	    --random-baseline --corpus $(ML)/corpus --tasks pr,lid --probe-seeds 3 --out $(ML)/eval --no-target-analysis
	cp $(ML)/eval/results.json docs/ml_probes.json
	cp $(ML)/eval/results.md docs/ml_probes.md
	mkdir -p docs/ml_tables_logs
	for r in bestrq_seed0 bestrq_seed1; do gzip -9 -n < $(ML)/$$r/metrics.jsonl > docs/ml_tables_logs/$$r.jsonl.gz; done

# the RPQ paper's multilingual ASR column
ml-asr: $(ML)/corpus/feature_stats.json
	$(ML_COMPARE) --encoder $(ML)/corpus/feature_stats.json --corpus $(ML)/corpus --out $(ML)/asr --pq 16 --rpq 32 \
	    --set data.vocab_size=2000
	$(BIN)/speechrq asr tables $(ML)/asr --prefix docs/ml_tables --logs docs/ml_tables_logs

# Table II on a narrow source (docs/asr_compare_seeds_tiny_bestrq.*; about an hour on 2 cores, resumable): layer 2 of
# the reference, raw, de-duplicated and de-dup + BPE k-means, PQ and RPQ, 3 seeds (each its own quantizer draw)
NARROW := exp/table2
narrow-table: $(STAMP)
	$(BIN)/speechrq synth $(DEMO)/corpus --hours 1.0 --seed 0
	$(BIN)/speechrq asr compare configs/asr/tiny.yaml --encoder $(REFERENCE) --layer 2 --corpus $(DEMO)/corpus --out $(NARROW) \
	    --k 500 --pq 2,4,8 --rpq 8 --alpha 0.25 --frames 70000 --no-continuous --kmeans-inputs units,dedup,bpe --unit-bpe 1000 \
	    --seeds 0,1,2 --jobs 2 --set optim.max_steps=1200 --set optim.warmup_steps=120 --set train.checkpoint_every=400 --quiet
	cp $(NARROW)/compare.json docs/asr_compare_seeds_tiny_bestrq.json
	cp $(NARROW)/compare.md docs/asr_compare_seeds_tiny_bestrq.md
	cp $(NARROW)/compare_errors.json.gz docs/asr_compare_seeds_tiny_bestrq_errors.json.gz
	rm -rf docs/asr_compare_seeds_logs && mkdir -p docs/asr_compare_seeds_logs
	for m in $(NARROW)/runs/*/seed*/metrics.jsonl; do r=$${m#$(NARROW)/runs/}; r=$${r%/metrics.jsonl}; \
	    gzip -9 -n < $$m > docs/asr_compare_seeds_logs/$$(echo $$r | tr / _).jsonl.gz; done

# Latent-RQ against BEST-RQ (docs/latent_study.*; several hours on 2 cores, resumable: a rerun trains only what is
# missing): 3 pre-training seeds, each its own train.seed and quantizer.seed; the paper's design (middle layers, θ
# refreshed at 20/50/80%) and the ranked-best ablation against BEST-RQ at 1000 steps; the strong-θ pair continues the
# reference for 2000 steps with its own Figure 3 curve
LATENT := exp/latent
latent-study: $(STAMP)
	$(BIN)/speechrq synth $(DEMO)/corpus --hours 1.0 --seed 0
	$(BIN)/speechrq features stats $(DEMO)/corpus
	$(BIN)/speechrq bench latent --corpus $(DEMO)/corpus --out $(LATENT) --seeds 0,1,2 --steps 1000 --best-layers=-1,0 \
	    --tasks pr,sid,er --probe-seeds 3 --reference $(REFERENCE) --reference-layers=-1,0 --reference-steps 2000 \
	    --reference-set quantizer.num_codebooks=8 --reference-set quantizer.codebook_size=4096 \
	    --arms "Latent-RQ layers [1, 2], paper's design (20/50/80%);Latent-RQ layers [-1, 0] (ranked best, branch 50%)" --quiet
	cp $(LATENT)/study.json docs/latent_study.json
	cp $(LATENT)/study.png docs/latent_study.png
	rm -rf docs/latent_study_logs && mkdir -p docs/latent_study_logs
	for m in $(LATENT)/seed*/*/metrics.jsonl; do r=$${m#$(LATENT)/}; r=$${r%/metrics.jsonl}; \
	    gzip -9 -n < $$m > docs/latent_study_logs/$$(echo $$r | tr / _).jsonl.gz; done

# Real speech (docs/real_speech.*; a few hours on 2 cores, resumable: a rerun trains and probes only what is missing): the
# tiny recipe for 1000 steps on the real hour of LibriSpeech excerpts against the synthesized hour (the demo's corpus,
# made first when missing), 3 pre-training seeds, probed with random init and the filterbank on speaker identification
# (10 test-other speakers) and the readers' sex (251 train-clean-100 speakers, split by speaker), 3 probe seeds. The
# excerpts are not part of the project: EXCERPTS=DIR, else $$SPEECHRQ_EXCERPTS, else ../shared/data/librispeech-excerpts
REAL := exp/real_speech
EXCERPTS ?=
real-speech: $(STAMP)
	test -f $(DEMO)/corpus/summary.json || $(BIN)/speechrq synth $(DEMO)/corpus --hours 1.0 --seed 0
	$(BIN)/speechrq bench real-speech $(EXCERPTS) --out $(REAL) --seeds 0,1,2 --steps 1000 --synth-corpus $(DEMO)/corpus \
	    --probe-seeds 3 --quiet
	cp $(REAL)/study.json docs/real_speech.json
	rm -rf docs/real_speech_logs && mkdir -p docs/real_speech_logs
	for m in $(REAL)/seed*/*/metrics.jsonl; do r=$${m#$(REAL)/}; r=$${r%/metrics.jsonl}; \
	    gzip -9 -n < $$m > docs/real_speech_logs/$$(echo $$r | tr / _).jsonl.gz; done

bench: $(STAMP)
	$(BIN)/python -m pip install -q conformer==0.3.2 vector-quantize-pytorch==1.32.0  # the peer (pyproject's bench extra)
	$(BIN)/python benchmarks/bench_peer.py --preset tiny --num-codebooks 8 --codebook-size 4096
	$(BIN)/python benchmarks/bench_peer.py --preset tiny --num-codebooks 8 --codebook-size 4096 --compile
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_asr_step.py --threads 1
	$(BIN)/python benchmarks/bench_asr_step.py --threads 2
	$(BIN)/speechrq bench pretrain --preset tiny --num-codebooks 8 --codebook-size 4096 --gemm-ceiling
	$(BIN)/speechrq bench pretrain --preset tiny --latent
	$(BIN)/speechrq bench pretrain --preset small --latent --steps 5
	$(BIN)/python benchmarks/bench_units.py kmeans --n 50000 --dim 768 --k 500
	$(BIN)/python benchmarks/bench_units.py memory --hours 0.5 --scale 10
	$(BIN)/python benchmarks/bench_passes.py

clean:
	rm -rf $(VENV) exp site
