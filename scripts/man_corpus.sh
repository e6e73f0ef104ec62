#!/usr/bin/env bash
# Build a labelled corpus (`section<TAB>sentence`) from this machine's manual pages: for each
# section, up to $PAGES pages spread evenly over its sorted file list, rendered by groff at a
# 2000-column width (one paragraph per line), split into sentences, kept when lower-cased prose
# of 4-40 words ending in . ! or ? (at least 80 % of the words plain words), deduplicated, at
# most $CAP per section (a fixed pseudo-random choice), and shuffled with a fixed seed. The
# output depends only on the installed pages. Usage: scripts/man_corpus.sh OUT.tsv
set -eu
out=${1:?usage: man_corpus.sh OUT.tsv}
PAGES=${PAGES:-130} CAP=${CAP:-4500} SECTIONS=${SECTIONS:-"1 2 3 5 7 8"}
export LC_ALL=C
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd /usr/share/man
for s in $SECTIONS; do
  find "man$s" -type f -name '*.gz' | sort \
    | awk -v k="$PAGES" '{ f[NR] = $0 } END { n = NR < k ? NR : k; for (i = 0; i < n; i++) print f[int(i * NR / n) + 1] }' \
    | xargs zcat -f | groff -mandoc -Tutf8 -P-cbou -rLL=2000n -rHY=0 2>/dev/null \
    | awk '/^[[:space:]]/ {
        p = $0; gsub(/[[:space:]]+/, " ", p); sub(/^ /, "", p); sub(/ $/, "", p)
        gsub(/[.!?] /, "&\n", p); n = split(p, s, "\n")
        for (i = 1; i <= n; i++) {
          t = tolower(s[i]); sub(/ $/, "", t)
          if (t !~ /^[a-z].*[.!?]$/) continue
          w = split(t, tok, " "); if (w < 4 || w > 40) continue
          ok = 0; for (j = 1; j <= w; j++) if (tok[j] ~ /^[("\047]?[a-z][a-z\047-]*[)"\047,.;:!?]*$/) ok++
          if (ok >= 0.8 * w) print t
        } }' \
    | sort -u | sort -R --random-source=<(yes) 2>/dev/null | head -n "$CAP" \
    | awk -v s="$s" '{ print s "\t" $0 }' > "$tmp/$s.tsv"
  echo "section $s: $(wc -l < "$tmp/$s.tsv") sentences" >&2
done
# a sentence found in two sections is kept once (its first section in $SECTIONS order)
cat "$tmp"/*.tsv | awk -F'\t' '!seen[$2]++' | sort -R --random-source=<(yes) > "$tmp/all.tsv"
mv "$tmp/all.tsv" "$out"
echo "$out: $(wc -l < "$out") lines" >&2
