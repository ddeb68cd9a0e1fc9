#!/bin/sh
# Regenerates the embedded figure fonts from DejaVu Sans 2.37 (Debian: fonts-dejavu-core).
# Needs fontTools (`pip install fonttools`).
set -e
# A fixed timestamp makes the output byte-for-byte reproducible.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
cd "$(dirname "$0")"
SRC=${DEJAVU_DIR:-/usr/share/fonts/truetype/dejavu}
U="U+0020-007E,U+00A0-00FF,U+0391-03A9,U+03B1-03C9,U+1D40,U+2010-2027,U+2030,U+2070-209F,U+2190-2193,U+2212,U+2215,U+221A,U+221E,U+2248,U+2260,U+2264,U+2265,U+22C5,U+25A0,U+25CF"
for f in DejaVuSans DejaVuSans-Bold; do
    pyftsubset "$SRC/$f.ttf" --unicodes="$U" --no-hinting --desubroutinize \
        --layout-features=kern --output-file="$f-subset.tmp.ttf"
    python3 fix_lsb.py "$f-subset.tmp.ttf" "$f-subset.ttf"
    rm "$f-subset.tmp.ttf"
done
