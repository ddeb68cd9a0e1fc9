"""Give every glyph a bounding box that starts at x <= 0.

plotters 0.3.7 (ab_glyph text) places a glyph's pixels relative to its bounding box but forgets
the box's left edge (the left side bearing), so narrow glyphs such as '.', 'i', 'l' drift left.
A zero-area contour at x = 0 makes the box start at the pen position; the drawn shapes are
unchanged and a renderer without the bug draws the same thing."""
import sys
from fontTools.ttLib import TTFont
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.pens.recordingPen import DecomposingRecordingPen

src, dst = sys.argv[1], sys.argv[2]
font = TTFont(src)
glyf, hmtx = font["glyf"], font["hmtx"]
gs = font.getGlyphSet()
changed = 0
for name in font.getGlyphOrder():
    g = glyf[name]
    if g.numberOfContours == 0:
        continue
    g.recalcBounds(glyf)
    if g.xMin <= 0:
        continue
    rec = DecomposingRecordingPen(gs)
    gs[name].draw(rec)
    pen = TTGlyphPen(None)
    rec.replay(pen)
    y = g.yMin
    pen.moveTo((0, y))
    pen.lineTo((0, y + 1))
    pen.closePath()
    new = pen.glyph()
    new.recalcBounds(glyf)
    glyf[name] = new
    adv, _ = hmtx[name]
    hmtx[name] = (adv, new.xMin)
    changed += 1
font.save(dst)
print(f"{changed} glyphs given a box from x = 0")
