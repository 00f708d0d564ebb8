#!/bin/bash
# Issue 35's re-runs, one make target after another, each on a frozen copy of src (exp/code35-TARGET, made from that
# target's commit when missing); each target resumes what it finished, and a finished target leaves exp/done.TARGET.
#   setsid nice -n 5 .inflight/queue.sh > /dev/null 2>&1 &     (stop: .inflight/stop_queue.sh)
cd "$(dirname "$0")/.."
declare -A CODE=(
  [latent-study]=a8f9abf   # seed 0 ran on 919de06; a8f9abf's training is bitwise the same (issue 38, stop 48), faster
)
mkdir -p exp
for t in ${TARGETS:-latent-study}; do  # narrow-table, ml-asr and rpq-tables have landed
  if [ -f exp/done.$t ]; then echo "=== skip $t (done)" >> exp/queue.log; continue; fi
  code=exp/code35-$t
  if [ ! -d $code/src ]; then
    mkdir -p $code && git archive ${CODE[$t]} src | tar -x -C $code && git rev-parse ${CODE[$t]} > $code/COMMIT
  fi
  echo "=== start $t $(date -u +%FT%TZ) (code $(cat $code/COMMIT))" >> exp/queue.log
  PYTHONPATH=$PWD/$code/src make $t >> exp/$t.log 2>&1; rc=$?
  echo "=== end $t rc=$rc $(date -u +%FT%TZ)" >> exp/queue.log
  [ $rc -eq 0 ] && touch exp/done.$t || exit $rc
done
