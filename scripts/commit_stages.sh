#!/usr/bin/env bash
# Commit a running study's finished stage JSONs (no weights) every 2 minutes, so that a machine lost between
# sessions loses no finished stage: usage `scripts/commit_stages.sh STUDY [DEPTH]` from the repository root
# (DEPTH 2 for seed*/STAGE.json, 3 for the reasoning study's seed*/TASK/STAGE.json). A later session copies
# experiments/STUDY/results/stages/* back into runs/STUDY (without seed*/rounds-*/rounds.json, whose weights
# are gone) and reruns the study's command, which resumes. A training stage is copied only once its
# evaluation stage exists: alone it would point at an adapter that a lost machine took with it.
# The generation cache is skipped: its manifest without its shards would only mislead a resumed run. So is the
# study's own report.json: `--publish` writes the published one beside stages/, and a copy taken mid-run would
# be a stale twin of it.
set -u
study=$1; depth=${2:-2}
cd "$(dirname "$0")/.."
src=runs/$study; dst=experiments/$study/results/stages
while true; do
  if [ -d "$src" ]; then
    (cd "$src" && { find . -maxdepth "$depth" -name mipo_cache -prune -o -path './seed*' -name '*.json' -print
                    find . -maxdepth 1 -name plan.json; find . -path './seed*/rounds-*/rounds.json'; }) |
      while read -r f; do
        case "$f" in *.train.json) [ -f "$src/${f%.train.json}.json" ] || continue ;; esac
        mkdir -p "$dst/$(dirname "$f")"
        cmp -s "$src/$f" "$dst/$f" || cp "$src/$f" "$dst/$f"
      done
    if [ -n "$(git status --porcelain -- "$dst")" ]; then
      n=$(find "$dst" -name '*.json' | wc -l)
      flock /tmp/axolotl-mipo-git.lock bash -c "git add -- '$dst' && git commit -q -m '$study: finished stages of the run so far ($n stage files)' -- '$dst'"
    fi
  fi
  sleep 120
done
