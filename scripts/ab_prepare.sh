#!/usr/bin/env bash
# Prepares an A/B call for the lent GPU machine: .carry/release holds this working tree
# (committed or not) as "new", OLD_REV (default HEAD) as old/, the third-party headers and
# the GoogleTest sources. Then, with the device tool (carry [".carry/release"]):
#   cd .carry/release && bash scripts/device_ab.sh
# Usage: scripts/ab_prepare.sh [OLD_REV]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old_rev=${1:-HEAD}
release=.carry/release
rm -rf "$release"
mkdir -p "$release/old" "$release/.carry"
# The working tree as it is: tracked files with their uncommitted changes, plus untracked
# files git does not ignore.
git ls-files --cached --others --exclude-standard -z | while IFS= read -r -d '' file; do
  [ -e "$file" ] && { mkdir -p "$release/$(dirname "$file")"; cp -p "$file" "$release/$file"; }
done
git archive "$old_rev" | tar -x -C "$release/old"
scripts/fetch_third_party.sh >/dev/null
cp -r third_party "$release/" && cp -r third_party "$release/old/"
[ -d .carry/googletest ] && cp -r .carry/googletest "$release/.carry/"
echo "old: $(git rev-parse --short "$old_rev")" > "$release/AB_REVISIONS"
echo "new: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+uncommitted')" >> "$release/AB_REVISIONS"
cat "$release/AB_REVISIONS"
du -sh "$release"
