#!/bin/bash
# Issue 35's re-runs, one make target after another, on a frozen copy of src (exp/code35, made from CODE_COMMIT when
# missing); each target resumes what it finished, and a finished target leaves exp/done.TARGET.
#   setsid nice -n 5 .inflight/queue.sh > /dev/null 2>&1 &     (stop: .inflight/stop_queue.sh)
cd "$(dirname "$0")/.."
CODE_COMMIT=cacf6c2c40b45c2f201326ae0539116a5696a846
mkdir -p exp
if [ ! -d exp/code35/src ]; then
  mkdir -p exp/code35 && git archive $CODE_COMMIT src | tar -x -C exp/code35 && echo $CODE_COMMIT > exp/code35/COMMIT
fi
export PYTHONPATH=$PWD/exp/code35/src
for t in ${TARGETS:-rpq-tables latent-study}; do  # narrow-table and ml-asr have landed (70cb9aa and the next commit)
  if [ -f exp/done.$t ]; then echo "=== skip $t (done)" >> exp/queue.log; continue; fi
  echo "=== start $t $(date -u +%FT%TZ) (code $(cat exp/code35/COMMIT))" >> exp/queue.log
  make $t >> exp/$t.log 2>&1; rc=$?
  echo "=== end $t rc=$rc $(date -u +%FT%TZ)" >> exp/queue.log
  [ $rc -eq 0 ] && touch exp/done.$t || exit $rc
done
