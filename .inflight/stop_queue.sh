#!/bin/bash
# stop the queue and everything it started (SIGTERM: runs unwind and resume later), and wait until all have exited
cd "$(dirname "$0")/.."
for p in $(pgrep -f "queue.sh"); do kill -TERM -- -$(ps -o pgid= -p $p | tr -d ' ') 2>/dev/null; done
pkill -TERM -f "speechrq (asr|pretrain|bench|evaluate|units|synth|features)" 2>/dev/null
for i in $(seq 60); do pgrep -f "queue.sh|bin/speechrq|multiprocessing" > /dev/null || exit 0; sleep 1; done
echo "still running:"; pgrep -af "queue.sh|bin/speechrq|multiprocessing"; exit 1
